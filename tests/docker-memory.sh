# The image under the memory limit the Deployment gives it, and the attacks on it. Sourced by
# tests/docker.sh once its engine is up: uses its DOCKER_HOST, $work, check and fail.
#
# memory_charge IMAGE: what the cgroup charges per open connection, from 1,000 connections in a
#   container with room for them all (--memory 256m): stalled in their heads, busy with
#   keep-alive requests, and stalled after 60,000 bytes of their heads (near the head limit).
# memory_attacks IMAGE [a] [b] [c] [e] [d] [f]: the container run as shipped (--memory 64m
#   --memory-swap 64m, read-only, no capabilities, no new privileges, uid 65534, default
#   seccomp), then in turn: (a) one 256 MiB header line; (b) 100 concurrent 1 MiB header lines;
#   (c) 3,000 connections sending an HTTP/2.0 request line, then leaving; (e) 3,000 keep-alive
#   connections busy with requests; (d) 6,000 connections stalled in their heads, held, then
#   closed; (f) 1,500 connections stalled after 60,000 bytes of their heads (the heads' budget
#   answers most of them 503). After each: running, not OOM-killed, not restarted, the same PID, and a GET
#   answered (after (d), within 5 s of the close). Then `docker stop` exits 0 in under 2 s.
#   Figures: the cgroup's memory peak per attack, the answers each attack got, admitted and
#   refused connections.
# memory_capacity IMAGE GO_IMAGE: 10,000 connections held under --memory 64m, on the host's
#   network, with hellod's bounds enforced and Go's hello beside it for the record
#   (tests/docker-capacity.py; see the section at the end). `tests/docker.sh capacity` runs
#   only this.
#
# The attacks come from tests/docker-attacks.py, run in the container's network namespace
# (nsenter) against 127.0.0.1:8080 there, as a pod's traffic reaches it in Kubernetes: not
# through the published port, whose proxy here (docker-proxy: no iptables rules in this test)
# holds six descriptors per connection (two sockets, two splice pipes) and stops for good at its
# first failed accept, so that 6,000 connections would test the proxy, not hellod. The GETs
# after each attack go through the published loopback port.

attacks_script=tests/docker-attacks.py

# HOST_PID ARGS...: docker-attacks.py in that process's network namespace, against port 8080.
attack_from_inside() {
    local pid=$1
    shift
    nsenter --net="/proc/$pid/ns/net" python3 "$attacks_script" 8080 "$@"
}
# Read by memory_attacks for its fits check; set by memory_charge.
connection_charge=
served_charge=

# As shipped, plus a restart policy as an orchestrator has: a restart would show.
memory_run_flags=(
    --read-only --cap-drop ALL --security-opt no-new-privileges --restart on-failure:3
)

# NAME MEMORY IMAGE: starts the container and waits for its readiness line.
memory_start() {
    docker run -d --name "$1" -p 127.0.0.1::8080 --memory "$2" --memory-swap "$2" \
        "${memory_run_flags[@]}" "$3" >/dev/null 2>"$work/run.log" ||
        { cat "$work/run.log"; fail "docker run --memory $2 $3"; }
    wait_for_readiness "$1"
}

# NAME: the published loopback port.
memory_port() {
    local address
    address=$(docker port "$1" 8080/tcp | grep '^127\.0\.0\.1:')
    address=${address%%$'\n'*}
    echo "${address##*:}"
}

# HOST_PID: the memory cgroup's directory on the host (v1's memory hierarchy, else v2's).
memory_cgroup_dir() {
    local path
    path=$(awk -F: '$2 == "memory" {print $3}' "/proc/$1/cgroup")
    if [ -n "$path" ] && [ -d "/sys/fs/cgroup/memory$path" ]; then
        echo "/sys/fs/cgroup/memory$path"
        return
    fi
    path=$(awk -F: '$1 == "0" {print $3}' "/proc/$1/cgroup")
    [ -f "/sys/fs/cgroup$path/memory.current" ] || fail "no memory cgroup found for pid $1"
    echo "/sys/fs/cgroup$path"
}

memory_usage() { cat "$1/memory.usage_in_bytes" 2>/dev/null || cat "$1/memory.current"; }
memory_peak() { cat "$1/memory.max_usage_in_bytes" 2>/dev/null || cat "$1/memory.peak"; }
# v1's peak resets on a write; v2's memory.peak does per writer from Linux 6.12 on, and before
# that stays the peak since the start (the figures then say "since start").
memory_peak_reset() {
    echo 0 >"$1/memory.max_usage_in_bytes" 2>/dev/null || echo 0 >"$1/memory.peak" 2>/dev/null || :
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

# FIGURES NAME: the value of NAME in docker-attacks.py's `name=value` line, 0 if absent.
field() { local value; value=$(tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"); echo "${value:-0}"; }

memory_threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }

# IMAGE ATTACK ARGS...: a fresh container under --memory 256m, 1,000 connections of that attack
# (stall or busy) held 3 s; sets `charge` (the cgroup's peak over idle, per connection) and
# `charge_figures`.
# charge_of IMAGE ATTACK [ARGS...], in a container of $charge_memory (256m unless set).
charge_of() {
    local image=$1 name="hellod-charge-$$" connections=1000 memory=${charge_memory:-256m}
    shift
    memory_start "$name" "$memory" "$image"
    local port host_pid cgroup idle figures peak open
    port=$(memory_port "$name")
    host_pid=$(docker inspect -f '{{.State.Pid}}' "$name")
    cgroup=$(memory_cgroup_dir "$host_pid")
    curl -fsS --max-time 5 "http://127.0.0.1:$port/" >/dev/null || fail "GET before the charge run"
    idle=$(memory_usage "$cgroup")
    memory_peak_reset "$cgroup"
    figures=$(attack_from_inside "$host_pid" "$@" --connections "$connections" --hold 3 \
        --deadline 60 --server-pid "$host_pid" --cgroup "$cgroup") || fail "docker-attacks.py $*"
    peak=$(memory_peak "$cgroup")
    open=$(field "$figures" silent)
    [ "$open" -eq "$connections" ] ||
        fail "only $open of $connections connections held open under --memory $memory: $figures"
    charge=$(((peak - idle) / connections))
    charge_figures="$charge bytes ($(awk -v b="$charge" 'BEGIN {printf "%.1f", b / 1024}') KiB):"
    charge_figures+=" idle $(mib "$idle") MiB, peak with $connections $(mib "$peak") MiB,"
    charge_figures+=" $(field "$figures" server_threads) threads, $(field "$figures" server_fds) descriptors"
    [ "$1" = busy ] && charge_figures+=", $(field "$figures" answers) answers"
    docker rm -f "$name" >/dev/null
}

memory_charge() {
    charge_of "$1" stall
    local stalled=$charge
    check "the cgroup charges per connection stalled in its head $charge_figures (--memory 256m)"
    charge_of "$1" busy
    check "the cgroup charges per busy keep-alive connection $charge_figures (--memory 256m)"
    # A connection waits (costs its socket, like a stalled one) unless it is served (busy).
    connection_charge=$stalled
    served_charge=$charge
    # Room for the heads' budget (a 16th of the limit) to hold 1,000 such heads.
    charge_memory=1g charge_of "$1" stall --bytes 60000
    echo "docker: measured: per connection stalled after 60,000 bytes of its head" \
        "$charge_figures (--memory 1g)"
}

# NAME PID WHAT [GET_WITHIN_SECONDS]: the container survived WHAT as the same process.
memory_survived() {
    local name=$1 pid=$2 what=$3 within=${4:-5}
    local state
    state=$(docker inspect -f \
        'running={{.State.Running}} oomkilled={{.State.OOMKilled}} restarts={{.RestartCount}} pid={{.State.Pid}}' \
        "$name")
    [ "$state" = "running=true oomkilled=false restarts=0 pid=$pid" ] ||
        fail "after $what: $state (expected running=true oomkilled=false restarts=0 pid=$pid)"
    local port started deadline body
    port=$(memory_port "$name")
    started=$(now_ms)
    deadline=$((started + within * 1000))
    until body=$(curl -fsS --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null) &&
        [ "$body" = "Hello, World!" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "after $what: no greeting within $within s"
        sleep 0.05
    done
    get_ms=$(($(now_ms) - started))
}

memory_attacks() {
    local image=$1 name="hellod-memory-$$"
    shift
    local attacks=("$@")
    [ ${#attacks[@]} -gt 0 ] || attacks=(a b c e d f)
    memory_start "$name" 64m "$image"
    local readiness limit port host_pid cgroup idle idle_threads
    readiness=$(docker logs "$name" 2>&1 | head -1)
    echo "docker: $image under --memory 64m says: $readiness"
    port=$(memory_port "$name")
    host_pid=$(docker inspect -f '{{.State.Pid}}' "$name")
    cgroup=$(memory_cgroup_dir "$host_pid")
    limit=$(sed -nE 's/.*up to ([0-9]+) connections.*/\1/p' <<<"$readiness")
    if [ -n "$limit" ]; then
        # What the open-files limit alone would allow (hellod raises its soft limit to the hard
        # one): the memory limit must allow fewer, or this run does not test its derivation.
        local files
        files=$(awk '/^Max open files/ {print $5}' "/proc/$host_pid/limits")
        # One descriptor a waiting connection, two more a served one.
        local serving
        serving=$(sed -nE 's/.*, ([0-9]+) served at once.*/\1/p' <<<"$readiness")
        [ "$files" = unlimited ] || [ "$limit" -lt $((files - 32 - 2 * ${serving:-0})) ] ||
            fail "the default connection limit $limit comes from the open-files limit $files," \
                "not from the 64 MiB limit"
        if [ -n "$connection_charge" ]; then
            local predicted=$(($(memory_usage "$cgroup") + limit * connection_charge + ${serving:-0} * served_charge))
            [ "$predicted" -lt $((64 << 20)) ] ||
                fail "$limit connections at $connection_charge bytes, ${serving:-0} served at $served_charge, would need $(mib "$predicted") MiB"
            check "default limit $limit connections from the 64 MiB limit: at the measured charge" \
                "they need $(mib "$predicted") MiB"
        fi
    fi
    memory_survived "$name" "$host_pid" "start"
    idle=$(memory_usage "$cgroup")
    idle_threads=$(memory_threads "$host_pid")
    echo "docker: idle under --memory 64m: $(mib "$idle") MiB, $idle_threads threads"

    local attack figures peak what
    for attack in "${attacks[@]}"; do
        memory_peak_reset "$cgroup"
        case $attack in
        a)
            what="one 256 MiB header line"
            figures=$(attack_from_inside "$host_pid" long-lines --connections 1 \
                --bytes $((256 << 20)) --deadline 60) || fail "docker-attacks.py: $what"
            ;;
        b)
            what="100 concurrent 1 MiB header lines"
            figures=$(attack_from_inside "$host_pid" long-lines --connections 100 \
                --bytes $((1 << 20)) --deadline 60) || fail "docker-attacks.py: $what"
            ;;
        c)
            what="3,000 HTTP/2.0 request lines"
            figures=$(attack_from_inside "$host_pid" http2 --connections 3000 \
                --deadline 60) || fail "docker-attacks.py: $what"
            ;;
        e)
            what="3,000 busy keep-alive connections"
            figures=$(attack_from_inside "$host_pid" busy --connections 3000 --hold 5 \
                --deadline 60) || fail "docker-attacks.py: $what"
            ;;
        d)
            what="6,000 connections stalled in their heads"
            figures=$(attack_from_inside "$host_pid" stall --connections 6000 --hold 10 \
                --deadline 90 --server-pid "$host_pid" --cgroup "$cgroup") ||
                fail "docker-attacks.py: $what"
            ;;
        f)
            what="1,500 connections stalled after 60,000 bytes of their heads"
            figures=$(attack_from_inside "$host_pid" stall --connections 1500 --bytes 60000 \
                --hold 5 --deadline 90 --server-pid "$host_pid" --cgroup "$cgroup") ||
                fail "docker-attacks.py: $what"
            ;;
        *) fail "unknown attack $attack" ;;
        esac
        peak=$(memory_peak "$cgroup" 2>/dev/null) || peak=0
        memory_survived "$name" "$host_pid" "$what ($figures)" 5
        case $attack in
        a | b)
            # 431 for a line past the head limit, or 503 where the lines together pass the heads'
            # budget first (the waiting room reads them all side by side): refused either way.
            local s503
            s503=$(field "$figures" s503)
            [ $(($(field "$figures" s431) + ${s503:-0})) -eq "$(field "$figures" connections)" ] ||
                fail "$what: not every line got 431 or 503: $figures"
            ;;
        c)
            # Nothing kept: tiny_http's pool lets idle threads go after 5 s.
            local deadline=$((SECONDS + 10)) threads
            while threads=$(memory_threads "$host_pid") && [ "$threads" -gt $((idle_threads + 24)) ]; do
                [ $SECONDS -lt $deadline ] ||
                    fail "$what: $threads threads 10 s later (idle $idle_threads)"
                sleep 0.2
            done
            figures+=" threads_after=$threads"
            ;;
        e)
            [ -z "$limit" ] || [ "$(field "$figures" busy)" -le "$limit" ] ||
                fail "$what: more busy connections than the limit of $limit"
            ;;
        d)
            local admitted refused
            admitted=$(field "$figures" admitted)
            refused=$(field "$figures" refused)
            [ "$((admitted + refused))" -eq 6000 ] ||
                fail "$what: $admitted admitted + $refused refused is not 6000: $figures"
            [ -z "$limit" ] || [ "$admitted" -le "$limit" ] ||
                fail "$what: $admitted admitted, over the limit of $limit"
            figures+=" (admitted $admitted, refused $refused: $(field "$figures" s503) with 503)"
            ;;
        f)
            # The connection limit counts connections; what their heads hold has a budget.
            [ "$(field "$figures" s503)" -gt 0 ] ||
                fail "$what: no head was refused for the heads' budget: $figures"
            figures+=" (held $(field "$figures" admitted), 503 to $(field "$figures" s503))"
            ;;
        esac
        check "$what: container running, not OOM-killed nor restarted, same PID," \
            "GET answered $get_ms ms later; peak $(mib "$peak") MiB of 64; $figures"
    done

    local started stop_ms exit_code
    started=$(now_ms)
    docker stop -t 5 "$name" >/dev/null
    stop_ms=$(($(now_ms) - started))
    exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
    [ "$exit_code" = 0 ] || fail "docker stop after the attacks: exit code $exit_code"
    [ "$stop_ms" -lt 2000 ] || fail "docker stop after the attacks took $stop_ms ms"
    check "docker stop after the attacks: exit code 0 in $stop_ms ms"
    docker rm "$name" >/dev/null
}

# --- Capacity: many connections held under --memory 64m. memory_capacity IMAGE
# GO_IMAGE, both on the host's network (--network host: no proxy, no namespace to enter; each
# server listens on a free loopback port of its own, hellod through HELLOD_LISTEN, its flags
# otherwise the defaults) under --memory 64m --memory-swap 64m, read-only, no capabilities, no
# new privileges, no restart policy (a death shows), a fresh container for each scenario of
# tests/docker-capacity.py, which documents them:
#   hellod: (c) the default connection limit in its readiness line at least 10,000; (a) idle:
#     10,000 keep-alive connections one after another, answered, held silent; 7 s later at
#     most 32 threads; a second GET on all at once answered within 3 s each; (b) mixed: a third
#     silent, a third half a head, a third a whole GET; 7 s later at most 32 threads; the heads
#     finished at once and answered within 3 s; after each, not OOM-killed, the same PID, the
#     cgroup's peak at most 40 MiB. Then 200 connections with a request in flight (served).
#   Go's hello (bench/go, static, FROM scratch): idle and served, for the record, no bounds:
#     connections held at most (before an OOM kill or failure), peak, charge per connection.
# The Docker health check is off (--no-healthcheck): it execs a second hellod in the container's
# cgroup every 10 s, whose memory would land in the peak at random; Kubernetes does not run it.
# A bound missed prints a FAIL line; the Go record still runs, then the stage fails.
capacity_script=tests/docker-capacity.py
capacity_memory=64m
# Connections each with a request in flight, in the served scenario.
capacity_served=80

capacity_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# NAME PORT RUN_ARGS... (docker run options, the image, its arguments): started and answering.
capacity_start() {
    local name=$1 port=$2
    shift 2
    docker run -d --name "$name" --network host --memory "$capacity_memory" \
        --memory-swap "$capacity_memory" --read-only --cap-drop ALL \
        --security-opt no-new-privileges --no-healthcheck "$@" >/dev/null 2>"$work/run.log" ||
        { cat "$work/run.log"; fail "docker run --memory $capacity_memory $*"; }
    local deadline=$((SECONDS + 30))
    until curl -fsS --max-time 1 "http://127.0.0.1:$port/" >/dev/null 2>&1; do
        [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ] ||
            { docker logs "$name"; fail "container $name exited"; }
        [ $SECONDS -lt $deadline ] || { docker logs "$name"; fail "$name: no greeting in 30 s"; }
        sleep 0.1
    done
}

# LABEL SCENARIO NAME PORT [docker-capacity.py options]: runs the scenario on the container
# started as NAME, then removes it. Counts a missed bound in capacity_failed; keeps the figures.
capacity_run() {
    local label=$1 scenario=$2 name=$3 port=$4
    shift 4
    local host_pid cgroup status=0 started
    host_pid=$(docker inspect -f '{{.State.Pid}}' "$name")
    cgroup=$(memory_cgroup_dir "$host_pid")
    started=$(now_ms)
    python3 "$capacity_script" "$port" "$scenario" --server-pid "$host_pid" --cgroup "$cgroup" \
        --container "$name" --label "$label" --stage "$stage" "$@" | tee -a "$work/capacity.log" ||
        status=$?
    # With tests/docker.sh's pipefail, the pipeline's status is python's: 1 for a bound missed.
    case $status in
    0) ;;
    1) capacity_failed=$((capacity_failed + 1)) ;;
    *) fail "docker-capacity.py $scenario on $label: exit status $status" ;;
    esac
    echo "$stage: measured: $label $scenario took $(($(now_ms) - started)) ms"
    docker rm -f "$name" >/dev/null
}

# LABEL SCENARIO KEY: a figure from docker-capacity.py's figures line, ? if absent.
capacity_figure() {
    local value
    value=$(grep -F ": figures: $1 $2 " "$work/capacity.log" | tail -1 | tr ' ' '\n' |
        sed -n "s/^$3=//p")
    echo "${value:-?}"
}

capacity_kib() { [ "$1" = "?" ] && echo "?" || awk -v b="$1" 'BEGIN {printf "%.1f", b / 1024}'; }

# GO_DIR: the Go hello of bench/go, static, in a FROM scratch image tagged hellod-test:go.
capacity_go_image() {
    local dir=$work/go-image
    mkdir -p "$dir"
    (cd bench/go && CGO_ENABLED=0 GOPROXY=off GOFLAGS= GOWORK=off GO111MODULE=on \
        GOTOOLCHAIN=local GOCACHE="$work/go-cache" \
        go build -trimpath -ldflags='-s -w' -o "$dir/hello-go" .) ||
        fail "go build of bench/go"
    printf '%s\n' 'FROM scratch' 'COPY hello-go /hello-go' 'USER 65534:65534' \
        'ENTRYPOINT ["/hello-go"]' >"$dir/Dockerfile"
    docker build -t hellod-test:go "$dir" >"$work/go-build.log" 2>&1 ||
        { cat "$work/go-build.log"; fail "docker build of Go's hello"; }
    check "Go's hello ($(go version | cut -d' ' -f3), static, $(stat -c %s "$dir/hello-go") bytes)" \
        "in a FROM scratch image"
}

memory_capacity() {
    local image=$1 go_image=$2 name="hellod-capacity-$$" port readiness limit started
    capacity_failed=0
    : >"$work/capacity.log"
    started=$(now_ms)

    port=$(capacity_free_port)
    capacity_start "$name" "$port" -e "HELLOD_LISTEN=127.0.0.1:$port" "$image"
    readiness=$(docker logs "$name" 2>&1 | head -1)
    echo "$stage: $image on the host's network under --memory $capacity_memory says: $readiness"
    limit=$(sed -nE 's/.*up to ([0-9]+) connections.*/\1/p' <<<"$readiness")
    if [ -n "$limit" ] && [ "$limit" -ge 10000 ]; then
        check "hellod (c) default connection limit under --memory $capacity_memory: $limit" \
            "(bound: at least 10000)"
    else
        echo "$stage: FAIL: hellod (c) default connection limit under --memory" \
            "$capacity_memory: ${limit:-none in the readiness line} (bound: at least 10000)" >&2
        capacity_failed=$((capacity_failed + 1))
    fi
    capacity_run hellod idle "$name" "$port" --check

    port=$(capacity_free_port)
    capacity_start "$name" "$port" -e "HELLOD_LISTEN=127.0.0.1:$port" "$image"
    capacity_run hellod mixed "$name" "$port" --check

    port=$(capacity_free_port)
    capacity_start "$name" "$port" -e "HELLOD_LISTEN=127.0.0.1:$port" "$image"
    # Fewer than the 85 hellod serves at once under 64 MiB: each one holds a thread.
    capacity_run hellod served "$name" "$port" --connections "$capacity_served"

    port=$(capacity_free_port)
    capacity_start "$name" "$port" "$go_image" -addr "127.0.0.1:$port"
    capacity_run Go idle "$name" "$port"

    port=$(capacity_free_port)
    capacity_start "$name" "$port" "$go_image" -addr "127.0.0.1:$port"
    capacity_run Go served "$name" "$port" --connections "$capacity_served"

    local server
    for server in hellod Go; do
        echo "$stage: measured: capacity under --memory $capacity_memory, $server:" \
            "held at most $(capacity_figure "$server" idle max_held) of 10000 idle connections" \
            "at once (OOM-killed: $(capacity_figure "$server" idle oom_killed)," \
            "peak $(capacity_figure "$server" idle peak) bytes);" \
            "per idle connection $(capacity_kib "$(capacity_figure "$server" idle idle_per_conn)") KiB" \
            "($(capacity_kib "$(capacity_figure "$server" idle idle_per_conn_peak)") by the peak)," \
            "per served connection $(capacity_kib "$(capacity_figure "$server" served served_per_conn)") KiB"
    done
    echo "$stage: measured: the capacity runs took $((($(now_ms) - started) / 1000)) s"
    [ "$capacity_failed" -eq 0 ] ||
        fail "capacity under --memory $capacity_memory: $capacity_failed scenario(s) missed" \
            "their bounds (the FAIL lines above)"
    check "capacity under --memory $capacity_memory: every bound met"
}
