#!/usr/bin/env bash
# The heavy robustness cases (tests/stress/) against the release binary, one at a time: accept
# failures and recovery, 2,000 stalled connections, clients stalled in bodies, floods of 10,000
# connections, SIGTERM under wrk, a three-minute soak, the attacks on memory and threads
# (huge and many headers, HTTP/2 request lines, trickled heads), and cuts of clients not reading
# beside churning connections, which must hit no other connection. Each test is
# bounded; so is the whole run (STRESS_TIMEOUT seconds, default 600, build excluded). Prints
# every figure measured, then a summary of them. Exits non-zero if any test fails.
# Usage: tests/stress.sh [TEST_NAME_FILTER]   (HELLOD_SOAK_SECONDS shortens the soak)
set -uo pipefail
cd "$(dirname "$0")/.."

# The floods hold 10,000 client sockets here and two descriptors each in hellod, which inherits
# this limit: as high as this user may go.
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "stress: open files limit $(ulimit -n)"

if ! command -v wrk >/dev/null 2>&1; then
    echo "stress: wrk is missing (tests/install-deps stress installs it)" >&2
    exit 1
fi

# Build first, outside the time limit: a cold release build (LTO) is slow on 2 cores.
cargo build --release --test stress || exit 1

log=$(mktemp "${TMPDIR:-/tmp}/hellod-stress.XXXXXX")
trap 'rm -f "$log"' EXIT
started=$SECONDS
timeout --kill-after=10 "${STRESS_TIMEOUT:-600}" \
    cargo test --release --test stress -- --ignored --test-threads=1 --nocapture ${1:+"$1"} \
    2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -eq 124 ] && echo "stress: stopped after ${STRESS_TIMEOUT:-600} s" >&2

echo
echo "=== stress figures ($((SECONDS - started)) s)"
grep -E '^(test .* \.\.\. )?(open files|accept|out of threads|a [0-9]+ MiB|a head|100,000|1,000|[0-9]+ (stalled|clients|tricklers)|closed by|after the read|settled|flood|SIGTERM|prober|tracked|soak|cuts beside|SKIPPED|WARNING)' "$log" \
    | sed -E 's/^test [a-z0-9_:]+ \.\.\. //'
grep -E "^test result|^    [a-z0-9_:]+$" "$log"
exit "$status"
