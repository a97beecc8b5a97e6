#!/usr/bin/env bash
# Socket activation for real, with systemd's own systemd-socket-activate: it opens the listening
# socket, waits for the first connection, then execs hellod with the socket as descriptor 3
# (LISTEN_FDS=1, LISTEN_PID=its pid). hellod must serve on that socket, say its address in the
# readiness line, bind nothing itself, and exit 0 on SIGTERM. The second run rebuilds the sandbox
# of deploy/systemd/hellod.service as far as this machine can without systemd as PID 1: the
# unit's Environment= lines, an empty network namespace (PrivateNetwork=yes), an unprivileged uid,
# no capabilities, no new privileges (DynamicUser=yes, CapabilityBoundingSet=, NoNewPrivileges=yes).
# The third holds the socket itself, as systemd does, and restarts hellod under load on it
# (tests/systemd-restart.py). The units themselves are checked with systemd-analyze by
# tests/manifests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=systemd
. tests/lib.sh

[ "$(id -u)" -eq 0 ] || fail "must run as root (the sandboxed run makes a network namespace)"
for command in systemd-socket-activate curl unshare setpriv; do
    command -v "$command" >/dev/null || fail "$command not found (tests/install-deps systemd)"
done

echo "systemd: building the binary"
cargo build --release --quiet
binary=$(readlink -f target/x86_64-unknown-linux-musl/release/hellod)
unit=deploy/systemd/hellod.service

with_work_dir

# The unit's settings: its Environment= lines, and ExecStart='s arguments after the binary.
environment=()
while IFS= read -r setting; do environment+=(-E "$setting"); done \
    < <(sed -n 's/^Environment=//p' "$unit")
read -r -a exec_start < <(sed -n 's/^ExecStart=//p' "$unit")
[ "${exec_start[0]##*/}" = hellod ] || fail "$unit: ExecStart= does not run hellod"
unit_args=("${exec_start[@]:1}")

# activate NAME HOST [WRAPPER...]: starts systemd-socket-activate on HOST and a free port, with
# hellod run through WRAPPER; sets pid, port and url.
activate() {
    local name=$1 host=$2
    shift 2
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        systemd-socket-activate -l "$host:$port" "${environment[@]}" \
            "$@" "$binary" "${unit_args[@]}" >"$work/$name.out" 2>"$work/$name.err" &
        pid=$!
        local deadline=$((SECONDS + 10))
        until grep -qs '^Listening on ' "$work/$name.err"; do
            kill -0 "$pid" 2>/dev/null || break
            [ $SECONDS -lt $deadline ] || fail "systemd-socket-activate did not listen in 10 s"
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            url="http://$host:$port/"
            return
        fi
        wait "$pid" || true
        grep -q 'in use' "$work/$name.err" || { cat "$work/$name.err"; fail "systemd-socket-activate"; }
    done
    fail "no free port found in 10 tries"
}

# serve NAME: the first connection starts hellod; checks what it serves and says.
serve() {
    local name=$1
    [ "$(readlink "/proc/$pid/exe")" != "$binary" ] || fail "hellod ran before the first connection"
    local started
    started=$(now_ms)
    local body
    body=$(curl -fsS --max-time 10 "$url") || fail "GET $url (first connection, starts hellod)"
    echo "systemd: measured: first GET, which starts hellod, answered in $(($(now_ms) - started)) ms"
    [ "$body" = "Hello, World!" ] || fail "GET $url answered: $body"
    [ "$(readlink "/proc/$pid/exe")" = "$binary" ] || fail "hellod is not the process that was handed the socket"
    tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "LISTEN_PID=$pid" || fail "LISTEN_PID is not hellod's pid"
    tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "LISTEN_FDS=1" || fail "LISTEN_FDS is not 1"
    check "GET $url -> $body, from hellod (pid $pid = LISTEN_PID, LISTEN_FDS=1)"

    local ready
    ready=$(head -1 "$work/$name.out")
    echo "systemd: hellod says: $ready"
    [[ "$ready" == *" listening on $url"* ]] || [[ "$ready" == *" listening on ${url%/} "* ]] ||
        fail "readiness line does not name the socket's address ${url%/}"
    check "readiness line names the socket it was handed"

    # Every listening TCP socket of hellod's, in its network namespace or ours: only the one it was
    # handed (hellod bound nothing itself).
    local inodes=() fd target
    for fd in /proc/"$pid"/fd/*; do
        target=$(readlink "$fd" 2>/dev/null) || continue
        [[ "$target" == socket:* ]] && inodes+=("${target//[^0-9]/}")
    done
    local listening
    listening=$(cat /proc/self/net/tcp /proc/self/net/tcp6 "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" |
        awk -v inodes=" ${inodes[*]} " '$4 == "0A" && index(inodes, " " $10 " ") {print $10, $2}' |
        sort -u)
    [ "$(wc -l <<<"$listening")" = 1 ] && [ "$((16#${listening##*:}))" = "$port" ] ||
        fail "hellod listens on more or other than the socket it was handed: $listening"
    check "hellod listens on the one socket it was handed, port $port, and bound nothing itself"
}

# stop NAME: SIGTERM, then exit code 0.
stop() {
    local name=$1 started status=0
    started=$(now_ms)
    kill -TERM "$pid"
    wait "$pid" || status=$?
    pid=
    echo "systemd: measured: SIGTERM to exit took $(($(now_ms) - started)) ms; hellod's last words:" \
        "$(tail -1 "$work/$name.out")"
    [ "$status" = 0 ] || fail "exit code $status after SIGTERM"
    check "SIGTERM: hellod exited 0"
}

echo "systemd: 1. plain socket activation on 127.0.0.1"
activate plain 127.0.0.1
serve plain
stop plain

echo "systemd: 2. the unit's sandbox, IPv6 loopback: ${environment[*]}" \
    "empty network namespace, uid 65534, no capabilities, no new privileges"
activate sandboxed '[::1]' unshare --net -- \
    setpriv --reuid 65534 --regid 65534 --clear-groups --no-new-privs --bounding-set -all --inh-caps -all
serve sandboxed
status=/proc/$pid/status
[ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] || fail "not in its own network namespace"
[ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "$status")" = 65534655346553465534 ] || fail "uid is not 65534"
[ "$(awk '/^CapBnd:/ {print $2}' "$status")" = 0000000000000000 ] || fail "capabilities left"
[ "$(awk '/^NoNewPrivs:/ {print $2}' "$status")" = 1 ] || fail "new privileges allowed"
check "hellod served from an empty network namespace as uid 65534, no capabilities, NoNewPrivs"
stop sandboxed

echo "systemd: 3. a restart refuses nothing: the socket stays systemd's across a stop"
python3 tests/systemd-restart.py "$binary" || fail "a restart under socket activation lost requests"
check "restart under load: every connection accepted, every request answered, exit codes 0"

echo "systemd: all checks passed"
