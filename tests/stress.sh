#!/usr/bin/env bash
# The heavy robustness cases (tests/stress/) against the release binary, one at a time: accept
# failures and recovery, 2,000 stalled connections, clients stalled in bodies, floods of 10,000
# connections, SIGTERM under wrk, the stop seen from open connections (busy, idle, half-sent,
# silent, trickling), a three-minute soak, the attacks on memory and threads (huge and many
# headers, HTTP/2 request lines, trickled heads), and cuts of clients not reading beside churning
# connections, which must hit no other connection; then a rolling restart behind HAProxy under
# wrk (tests/haproxy-restart.py). Each test is bounded; so is the whole run (STRESS_TIMEOUT
# seconds, default 600, build excluded, and 90 more for the HAProxy run). Prints every figure
# measured, then a summary of them. Exits non-zero if any test fails.
# Usage: tests/stress.sh [TEST_NAME_FILTER]   (HELLOD_SOAK_SECONDS shortens the soak; the filter
# `haproxy` runs only the HAProxy restart, any other only the cargo tests it matches)
set -uo pipefail
cd "$(dirname "$0")/.."

# The floods hold 10,000 client sockets here and two descriptors each in hellod, which inherits
# this limit: as high as this user may go.
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "stress: open files limit $(ulimit -n)"

for command in wrk haproxy; do
    if ! command -v "$command" >/dev/null 2>&1; then
        echo "stress: $command is missing (tests/install-deps stress installs it)" >&2
        exit 1
    fi
done

# Build first, outside the time limit: a cold release build (LTO) is slow on 2 cores.
cargo build --release --test stress || exit 1

log=$(mktemp "${TMPDIR:-/tmp}/hellod-stress.XXXXXX")
trap 'rm -f "$log"' EXIT
started=$SECONDS
status=0
if [ "${1:-}" != haproxy ]; then
    timeout --kill-after=10 "${STRESS_TIMEOUT:-600}" \
        cargo test --release --test stress -- --ignored --test-threads=1 --nocapture ${1:+"$1"} \
        2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    [ "$status" -eq 124 ] && echo "stress: stopped after ${STRESS_TIMEOUT:-600} s" >&2
fi
if [ -z "${1:-}" ] || [ "$1" = haproxy ]; then
    # The binary the build above made (the default target is musl, .cargo/config.toml).
    timeout --kill-after=10 90 python3 tests/haproxy-restart.py \
        target/x86_64-unknown-linux-musl/release/hellod 2>&1 | tee -a "$log"
    haproxy_status=${PIPESTATUS[0]}
    [ "$haproxy_status" -eq 124 ] && echo "stress: the HAProxy restart stopped after 90 s" >&2
    [ "$status" -eq 0 ] && status=$haproxy_status
fi

echo
echo "=== stress figures ($((SECONDS - started)) s)"
grep -E '^(test .* \.\.\. )?(open files|accept|out of threads|a [0-9]+ MiB|a head|a half-sent|100,000|1,000|[0-9]+ (stalled|clients|tricklers)|closed by|after the read|settled|flood|SIGTERM|prober|tracked|stop with|haproxy restart|soak|cuts beside|SKIPPED|WARNING)' "$log" \
    | sed -E 's/^test [a-z0-9_:]+ \.\.\. //'
grep -E "^test result|^    [a-z0-9_:]+$" "$log"
exit "$status"
