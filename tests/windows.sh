#!/usr/bin/env bash
# hellod.exe, for real: cross-builds x86_64-pc-windows-gnu with MinGW-w64 and runs it under Wine
# (a prefix of its own in a temporary directory): the accept loop's unit test, --version and the
# warning that the build has no connection or request limits, the greeting over loopback with
# {hostname} in a header, its healthcheck against it and against a dead port, and Ctrl-C. Wine
# turns a SIGINT to the process into the console's CTRL_C_EVENT, the path a Ctrl-C in a console
# takes, so the stop is tested through hellod's console handler: a request in flight is answered,
# new connections are refused, exit code 0.
# hellod.exe imports no bcryptprimitives.dll (it asks for no random numbers) and runs as built.
# The unit tests do (std's HashMap keys come from its ProcessPrng), which Wine 8 lacks: a stand-in
# that forwards to RtlGenRandom (advapi32's SystemFunction036) is built beside them only. Windows
# has ProcessPrng itself; the stand-in is never shipped.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=windows
. tests/lib.sh

wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
[ -x "$wine" ] || fail "wine64 not found (tests/install-deps windows)"
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
command -v x86_64-w64-mingw32-gcc >/dev/null || fail "MinGW-w64 not found (tests/install-deps windows)"

echo "windows: cross-building x86_64-pc-windows-gnu"
started=$(now_ms)
cargo build --release --quiet --target x86_64-pc-windows-gnu
exe=target/x86_64-pc-windows-gnu/release/hellod.exe
echo "windows: built $exe, $(stat -c %s "$exe") bytes, in $(($(now_ms) - started)) ms"

with_work_dir
export WINEPREFIX="$work/prefix" WINEDEBUG=-all
# The prefix's wineserver outlives the programs by a few seconds: end it before the directory goes.
trap '"$wineserver" -k 2>/dev/null; "$wineserver" -w 2>/dev/null; _clean_up_work_dir' EXIT
cp "$exe" "$work/hellod.exe"
mkdir "$work/unit-tests"
cat >"$work/prng.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$work/unit-tests/bcryptprimitives.dll" "$work/prng.c" \
    -ladvapi32
hellod() { timeout 60 "$wine" "$work/hellod.exe" "$@"; }

# The accept loop's watch, which on Windows asks Winsock whether the loop's duplicate of the
# listening socket is still open and listening: its unit test, run by Wine's ws2_32.
echo "windows: cross-building the unit tests"
unit_tests=$(cargo test --lib --no-run --target x86_64-pc-windows-gnu 2>&1 |
    sed -n 's/^ *Executable .*(\(.*\.exe\))$/\1/p')
[ -n "$unit_tests" ] || fail "no unit test executable for x86_64-pc-windows-gnu"
cp "$unit_tests" "$work/unit-tests/unit-tests.exe"
timeout 120 "$wine" "$work/unit-tests/unit-tests.exe" --quiet tiny_http_gaps::accept_loop \
    >"$work/unit" 2>&1 || { cat "$work/unit"; fail "the accept loop's unit test failed under Wine"; }
grep -q '^test result: ok. 1 passed' "$work/unit" || { cat "$work/unit"; fail "the accept loop's unit test did not run"; }
check "unit test tiny_http_gaps::accept_loop under Wine: a loop is seen ended once its duplicate is closed"

started=$(now_ms)
version=$(hellod --version 2>"$work/err") || { cat "$work/err"; fail "hellod.exe --version failed"; }
expected="hellod $(cargo pkgid | sed 's/.*[#@]//')"
[ "$(head -1 <<<"$version")" = "$expected" ] || fail "--version printed: $version, expected $expected"
check "wine hellod.exe --version -> $(head -1 <<<"$version")" \
    "($(($(now_ms) - started)) ms, with a new Wine prefix)"
# The guard is Linux-only: --version's second (and last) line says so, and so must the warning
# a serving hellod.exe prints on stderr at start (checked below).
unguarded=$(sed -n '2s/^warning: //p' <<<"$version")
[ "$(wc -l <<<"$version")" = 2 ] && [[ $unguarded == "this build has no connection or request limits"* ]] ||
    fail "--version does not say that this build is unguarded: $version"
check "--version, second line: warning: $unguarded"

# What Windows (here Wine) tells every process its computer's name is, for {hostname}.
computer=$(timeout 60 "$wine" cmd.exe /c 'echo %COMPUTERNAME%' | tr -d '\r')
[ -n "$computer" ] || fail "no COMPUTERNAME under Wine"
"$wine" "$work/hellod.exe" --listen 127.0.0.1:0 --grace 30 --header 'X-Served-By: {hostname}' \
    >"$work/out" 2>"$work/err" &
pid=$!
address=$(address_of "$pid" "$work/out" "$work/err") || exit 1
host=${address%:*} port=${address##*:}
# hellod prints its warning before its readiness line, which address_of has seen.
[ "$(cat "$work/err")" = "hellod: warning: $unguarded" ] ||
    fail "stderr at start is not the one warning line: $(cat "$work/err")"
check "stderr at start: hellod: warning: $unguarded"

check_greeting "$address"

health=$(hellod healthcheck --url "http://$address/") || fail "healthcheck failed: $health"
check "hellod.exe healthcheck --url http://$address/ -> $health"
dead_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
status=0
hellod healthcheck --url "http://127.0.0.1:$dead_port/" >/dev/null 2>"$work/health-err" || status=$?
[ "$status" = 1 ] || fail "healthcheck against a dead port: exit code $status, expected 1"
check "hellod.exe healthcheck against dead port $dead_port -> exit 1: $(head -1 "$work/health-err")"

# A request in flight: its head is read, its body still arriving when Ctrl-C comes.
exec 4<>"/dev/tcp/$host/$port"
printf 'POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 4000\r\n\r\n' "$address" >&4
head -c 2000 /dev/zero | tr '\0' x >&4
# tiny_http has the head once the server has an open connection with nothing left unread; give
# it until the kernel's queue for this connection is empty.
deadline=$((SECONDS + 10))
until [ "$(ss -Htn state established "sport = :$port" | awk '{s += $1} END {print s + 0}')" = 0 ]; do
    [ $SECONDS -lt $deadline ] || fail "hellod.exe did not read the request in 10 s"
    sleep 0.05
done
started=$(now_ms)
kill -INT "$pid"
deadline=$((SECONDS + 10))
until grep -qs 'received, stopping' "$work/out"; do
    [ $SECONDS -lt $deadline ] || fail "no stop in 10 s after Ctrl-C: $(cat "$work/out" "$work/err")"
    sleep 0.02
done
check "Ctrl-C (SIGINT, which Wine delivers as CTRL_C_EVENT): $(tail -1 "$work/out")"
deadline=$((SECONDS + 10))
while (exec 5<>"/dev/tcp/$host/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "still accepting 10 s after Ctrl-C"
    sleep 0.02
done
check "new connections refused $(($(now_ms) - started)) ms after Ctrl-C"
kill -0 "$pid" 2>/dev/null || fail "hellod.exe exited with a request in flight"
head -c 2000 /dev/zero | tr '\0' x >&4
answer=$(timeout 10 cat <&4 | tr -d '\r' || true)
exec 4<&-
[ "$(head -1 <<<"$answer")" = "HTTP/1.1 200 OK" ] || fail "the request in flight got: $(head -1 <<<"$answer")"
[ "$(tail -1 <<<"$answer")" = "Hello, World!" ] || fail "the request in flight got: $(tail -1 <<<"$answer")"
check "the request in flight was answered: 200, Hello, World!"
served_by=$(sed -n 's/^X-Served-By: //p' <<<"$answer")
[ "$served_by" = "$computer" ] || fail "X-Served-By: {hostname} gave '$served_by', COMPUTERNAME is '$computer'"
check "X-Served-By: {hostname} -> $served_by, the COMPUTERNAME Windows gives"
status=0
timeout 30 tail --pid="$pid" -f /dev/null || fail "hellod.exe did not exit within 30 s of Ctrl-C"
wait "$pid" || status=$?
pid=
[ "$status" = 0 ] || fail "exit code $status after Ctrl-C: $(cat "$work/err")"
check "exit code 0, $(($(now_ms) - started)) ms after Ctrl-C"
echo "windows: all checks passed"
