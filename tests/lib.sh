# Sourced by the stage scripts, after setting `stage` to their name.

fail() { echo "$stage: FAIL: $*" >&2; exit 1; }
check() { echo "$stage: ok: $*"; }
now_ms() { date +%s%3N; }

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
