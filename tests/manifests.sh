#!/usr/bin/env bash
# Static checks of everything deployed: every Kubernetes manifest against the Kubernetes schemas
# (kubernetes-validate, strict: unknown fields fail) and against what the deployment promises
# (replicas, probes, resources, the locked-down security context, a grace that fits --grace); the
# Dockerfile with hadolint; the systemd units with systemd-analyze verify and security, where
# systemd-analyze can run (it says so when it cannot).
set -euo pipefail
cd "$(dirname "$0")/.."

stage=manifests
. tests/lib.sh

command -v kubernetes-validate >/dev/null || fail "kubernetes-validate not found (tests/install-deps manifests)"
command -v hadolint >/dev/null || fail "hadolint not found (tests/install-deps manifests)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Kubernetes: the schemas of the oldest version the manifests support (the preStop sleep
# action is on by default from 1.30) and of the newest that kubernetes-validate knows.
manifests=(deploy/kubernetes/*.yaml)
[ -e "${manifests[0]}" ] || fail "no manifests in deploy/kubernetes"
for version in 1.30.0 default; do
    flags=(--strict --quiet)
    [ "$version" = default ] || flags+=(-k "$version")
    kubernetes-validate "${flags[@]}" "${manifests[@]}" || fail "kubernetes-validate ${flags[*]}"
    check "kubernetes-validate ${flags[*]}: ${manifests[*]}"
done

# What the schemas cannot say: the promises of the deployment, read from the manifests.
python3 - "${manifests[@]}" <<'EOF' || fail "deployment policy"
import sys, yaml

docs = {}
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            docs[doc["kind"]] = doc
missing = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} - docs.keys()
assert not missing, f"missing kinds: {missing}"

def need(condition, what):
    if not condition:
        sys.exit(f"manifests: FAIL: {what}")
    print(f"manifests: ok: {what}")

deployment = docs["Deployment"]
labels = deployment["spec"]["selector"]["matchLabels"]
pod = deployment["spec"]["template"]["spec"]
(container,) = pod["containers"]
security = container["securityContext"]
env = {e["name"]: e.get("value") for e in container.get("env", [])}
grace = int(env.get("HELLOD_GRACE", 10))
pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
resources = container["resources"]

need(deployment["spec"]["replicas"] == 3, "Deployment: 3 replicas")
need(all(container[p]["httpGet"]["port"] in ("http", 8080) for p in ("readinessProbe", "livenessProbe")),
     "Deployment: HTTP readiness and liveness probes on the container's port")
need(all(k in resources.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
     f"Deployment: cpu and memory requests and limits {resources}")
need(pod["securityContext"].get("runAsNonRoot") is True, "Deployment: runAsNonRoot")
need(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault",
     "Deployment: RuntimeDefault seccomp profile")
need(security.get("readOnlyRootFilesystem") is True, "Deployment: readOnlyRootFilesystem")
need(security.get("allowPrivilegeEscalation") is False, "Deployment: no privilege escalation")
need(security.get("capabilities", {}).get("drop") == ["ALL"], "Deployment: all capabilities dropped")
need(pod["terminationGracePeriodSeconds"] >= pre_stop + grace,
     f"Deployment: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']}"
     f" >= preStop sleep {pre_stop} + HELLOD_GRACE {grace}")
field_refs = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
              for e in container.get("env", [])}
need(field_refs.get("POD_NAME") == "metadata.name" and "$(POD_NAME)" in env.get("HELLOD_HEADERS", ""),
     "Deployment: HELLOD_HEADERS names the replica that answered (POD_NAME from metadata.name)")
need(docs["Service"]["spec"]["selector"] == labels, "Service selects the Deployment's pods")
need(docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels,
     "PodDisruptionBudget selects the Deployment's pods")
target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
need(target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"],
     "HorizontalPodAutoscaler scales the Deployment")
EOF

# --- The Deployment's response headers, as a pod would get them: hellod must accept them and send
# the pod's name (Kubernetes expands $(POD_NAME) in the value).
cargo build --release --quiet
binary=$PWD/target/x86_64-unknown-linux-musl/release/hellod
headers=$(python3 -c '
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    for env in doc["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "HELLOD_HEADERS":
            print(env["value"].replace("$(POD_NAME)", "hellod-5d8f7b9c6-x2x7k"))
' deploy/kubernetes/deployment.yaml)
HELLOD_HEADERS=$headers "$binary" --listen 127.0.0.1:0 >"$work/hellod.out" 2>"$work/hellod.err" &
hellod_pid=$!
trap 'kill "$hellod_pid" 2>/dev/null; rm -rf "$work"' EXIT
address=$(address_of "$hellod_pid" "$work/hellod.out" "$work/hellod.err") || exit 1
exec 3<>"/dev/tcp/${address%:*}/${address##*:}"
printf 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
served_by=$(timeout 10 cat <&3 | tr -d '\r' | sed -n 's/^X-Served-By: //p')
exec 3<&-
kill "$hellod_pid"
wait "$hellod_pid" || fail "hellod exited with $? on SIGTERM"
trap 'rm -rf "$work"' EXIT
[ "$served_by" = hellod-5d8f7b9c6-x2x7k ] || fail "Deployment's headers: X-Served-By is '$served_by'"
check "Deployment's HELLOD_HEADERS: the pod hellod-5d8f7b9c6-x2x7k answers with X-Served-By: $served_by"

# --- The Dockerfile: hadolint fails on any finding, warnings and notes included.
hadolint --failure-threshold info Dockerfile || fail "hadolint Dockerfile"
check "hadolint $(hadolint --version | grep -oE '[0-9]+\.[0-9.]+'): Dockerfile has no findings"

# --- systemd units. systemd-analyze verify needs ExecStart='s program to exist, so it checks
# copies whose ExecStart runs the binary that cargo builds here; verify only warns about unknown
# or malformed settings, so anything it prints fails the check.
units=(deploy/systemd/hellod.socket deploy/systemd/hellod.service)
grep -q '^ExecStart=/usr/local/bin/hellod$' deploy/systemd/hellod.service ||
    fail "hellod.service: ExecStart= is not /usr/local/bin/hellod (the README installs it there)"
grep -qx 'Restart=on-failure' deploy/systemd/hellod.service || fail "hellod.service: no Restart=on-failure"
unit_grace=$(sed -n 's/^Environment=HELLOD_GRACE=//p' deploy/systemd/hellod.service)
stop_timeout=$(sed -n 's/^TimeoutStopSec=//p' deploy/systemd/hellod.service)
[ "${stop_timeout:-90}" -gt "${unit_grace:-10}" ] ||
    fail "hellod.service: TimeoutStopSec=$stop_timeout is not longer than HELLOD_GRACE=$unit_grace"
check "hellod.service: Restart=on-failure, TimeoutStopSec=$stop_timeout > HELLOD_GRACE=$unit_grace"

if ! command -v systemd-analyze >/dev/null; then
    echo "manifests: SKIPPED: systemd-analyze verify and security (systemd-analyze not installed)"
    exit 0
fi
mkdir "$work/units"
cp "${units[@]}" "$work/units/"
sed -i "s|^ExecStart=/usr/local/bin/hellod|ExecStart=$binary|" "$work/units/hellod.service"
# Can it run here at all? A unit with nothing to find fault with tells.
printf '[Service]\nExecStart=%s\n' "$binary" >"$work/canary.service"
if ! systemd-analyze verify "$work/canary.service" >"$work/canary.log" 2>&1 || [ -s "$work/canary.log" ]; then
    echo "manifests: SKIPPED: systemd-analyze verify and security cannot run here:" \
        "$(head -3 "$work/canary.log" | tr '\n' ' ')"
    exit 0
fi
systemd-analyze verify "$work/units/hellod.socket" "$work/units/hellod.service" >"$work/verify.log" 2>&1 ||
    { cat "$work/verify.log"; fail "systemd-analyze verify"; }
[ ! -s "$work/verify.log" ] || { cat "$work/verify.log"; fail "systemd-analyze verify found faults"; }
check "systemd-analyze verify: ${units[*]} ($(systemd-analyze --version | head -1))"

# Exposure 0.0 (locked down) to 10.0 (unprotected); --threshold is ten times that.
exposure=$(systemd-analyze security --offline=true "$work/units/hellod.service" 2>&1 |
    sed -n 's/.*Overall exposure level for hellod.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level"
systemd-analyze security --offline=true --threshold=10 "$work/units/hellod.service" >/dev/null 2>&1 ||
    fail "hellod.service: exposure level $exposure is above 1.0"
check "systemd-analyze security: hellod.service exposure level $exposure (at most 1.0)"
echo "manifests: all checks passed"
