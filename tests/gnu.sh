#!/usr/bin/env bash
# The glibc build (x86_64-unknown-linux-gnu, which Rust links dynamically), guarded as the musl one
# is: its socket hooks are the executable's own accept4, recv, shutdown and close, which the
# dynamic linker binds the executable's calls to before libc.so's, and the start-up probe refuses
# to serve if tiny_http's calls miss them. Runs every cargo test against a debug gnu build (the
# tests find the binary through CARGO_BIN_EXE_hellod, which follows --target), then checks the
# release build: dynamically linked (else this stage would test a static binary again), its
# readiness line names its limits (the probe passed), and an HTTP/2.0 request gets hellod's 505.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=gnu
. tests/lib.sh

target=x86_64-unknown-linux-gnu
cargo test --target "$target" --all-targets

started=$(now_ms)
cargo build --release --quiet --target "$target"
binary=target/$target/release/hellod
echo "gnu: built $binary, $(stat -c %s "$binary") bytes, in $(($(now_ms) - started)) ms"

interpreter=$(readelf --program-headers "$binary" | sed -nE 's/.*Requesting program interpreter: (.*)]/\1/p')
[ -n "$interpreter" ] || fail "$binary has no program interpreter: not dynamically linked"
libc_so=$(readelf --dynamic "$binary" | sed -nE 's/.*Shared library: \[(libc\.so[^]]*)\].*/\1/p')
[ -n "$libc_so" ] || fail "$binary does not link libc.so"
check "dynamically linked: interpreter $interpreter, $libc_so"

with_work_dir
"$binary" --listen 127.0.0.1:0 --header 'Server: gnu-check' >"$work/out" 2>"$work/err" &
pid=$!
address=$(address_of "$pid" "$work/out" "$work/err") || exit 1
grep -qE ' up to [0-9]+ connections, [0-9]+ served at once' "$work/out" ||
    fail "the readiness line names no limits: $(head -1 "$work/out")"
check "guarded: the start-up probe saw the hooks"

check_greeting "$address"

# The request line alone, which hellod refuses at its version: bash's printf writes line by line,
# and lines sent after the refusal would meet a reset (and SIGPIPE end this script).
exec 3<>"/dev/tcp/${address%:*}/${address##*:}" || fail "cannot connect to $address"
printf 'GET / HTTP/2.0\r\n' >&3
answer=$(timeout 10 cat <&3 | tr -d '\r')
exec 3<&-
[ "$(head -1 <<<"$answer")" = "HTTP/1.1 505 HTTP Version Not Supported" ] ||
    fail "GET / HTTP/2.0 answered: $(head -1 <<<"$answer")"
# tiny_http answers HTTP/2.0 with a 505 of its own too, but names itself in it: the configured
# Server header says the answer is hellod's.
grep -qx 'Server: gnu-check' <<<"$answer" || fail "the 505 is not hellod's: $answer"
check "GET / HTTP/2.0 -> hellod's own 505, with the configured Server header"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "exit code $status after SIGTERM"
check "SIGTERM: exit code 0"

echo "gnu: all checks passed"
