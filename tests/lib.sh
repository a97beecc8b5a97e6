# Sourced by the stage scripts, after setting `stage` to their name.

fail() { echo "$stage: FAIL: $*" >&2; exit 1; }
check() { echo "$stage: ok: $*"; }
now_ms() { date +%s%3N; }

# One GET of http://$1/ with bash alone (no client to install, nothing but hellod answering),
# 10 s at most: checks that it is the greeting.
check_greeting() {
    local address=$1 answer status_line body
    exec 3<>"/dev/tcp/${address%:*}/${address##*:}" || fail "cannot connect to $address"
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$address" >&3
    answer=$(timeout 10 cat <&3)
    exec 3<&-
    status_line=$(head -1 <<<"$answer" | tr -d '\r')
    body=$(tail -1 <<<"$answer")
    [ "$status_line" = "HTTP/1.1 200 OK" ] || fail "GET http://$address/ answered: $status_line"
    [ "$body" = "Hello, World!" ] || fail "GET http://$address/ body: $body"
    check "GET http://$address/ -> $status_line, $body"
}

# Waits, 30 s at most, for the readiness line of the hellod with PID $1 writing its stdout to $2
# and its stderr to $3; prints the address it listens on. Call as `address=$(address_of ...)
# || exit 1`: a failure ends only the command substitution.
address_of() {
    local pid=$1 out=$2 err=$3 deadline=$((SECONDS + 30))
    until grep -qs ' listening on ' "$out"; do
        kill -0 "$pid" 2>/dev/null || fail "hellod exited before it was ready: $(cat "$err")"
        [ $SECONDS -lt $deadline ] || fail "no readiness line in 30 s"
        sleep 0.05
    done
    echo "$stage: hellod says: $(head -1 "$out")" >&2
    sed -nE '1s|.* listening on http://([^ ]+) .*|\1|p' "$out"
}

# A scratch directory ($work) and the one server process a script runs at a time ($pid): on any
# exit the process is killed and the directory removed.
with_work_dir() {
    work=$(mktemp -d)
    pid=
    trap _clean_up_work_dir EXIT
    trap 'exit 130' INT TERM
}

_clean_up_work_dir() {
    local status=$?
    set +e
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
    exit "$status"
}
