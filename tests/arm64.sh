#!/usr/bin/env bash
# The arm64 binary, for real: cross-builds aarch64-unknown-linux-musl (rust-lld, no C toolchain),
# checks that it is a static aarch64 ELF, and runs it under qemu user-mode emulation (qemu-aarch64,
# no sysroot, so a dynamic binary would not start): --version, the greeting over loopback, its own
# healthcheck command against it, and a clean exit 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=arm64
. tests/lib.sh

command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 not found (tests/install-deps arm64)"

echo "arm64: cross-building aarch64-unknown-linux-musl"
started=$(now_ms)
cargo build --release --quiet --target aarch64-unknown-linux-musl
binary=target/aarch64-unknown-linux-musl/release/hellod
echo "arm64: built $binary, $(stat -c %s "$binary") bytes, in $(($(now_ms) - started)) ms"

with_work_dir

# ELF header: magic, 64-bit (class 2), little-endian (1), machine 183 (EM_AARCH64). No program
# header of type PT_INTERP (3): nothing to load at run time.
header=$(od -An -tx1 -N20 "$binary" | tr -d ' \n')
[ "${header:0:12}" = 7f454c460201 ] || fail "not a 64-bit little-endian ELF file: ${header:0:12}"
[ "${header:36:4}" = b700 ] || fail "ELF machine is not aarch64: ${header:36:4}"
python3 - "$binary" <<'EOF' || fail "$binary has a program interpreter (dynamically linked)"
import struct, sys
data = open(sys.argv[1], "rb").read()
phoff, = struct.unpack_from("<Q", data, 32)
phentsize, phnum = struct.unpack_from("<HH", data, 54)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
sys.exit(3 in types)
EOF
check "static aarch64 ELF (no program interpreter)"

version=$(qemu-aarch64 "$binary" --version)
expected="hellod $(cargo pkgid | sed 's/.*[#@]//')"
[ "$version" = "$expected" ] || fail "--version printed: $version, expected $expected"
check "qemu-aarch64 $binary --version -> $version"

# Port 0: the kernel picks a free port, and the readiness line says which.
qemu-aarch64 "$binary" --listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
address=$(address_of "$pid" "$work/out" "$work/err") || exit 1

check_greeting "$address"

health=$(qemu-aarch64 "$binary" healthcheck --url "http://$address/") ||
    fail "healthcheck under qemu failed: $health"
check "qemu-aarch64 $binary healthcheck --url http://$address/ -> $health"

started=$(now_ms)
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
echo "arm64: measured: SIGTERM to exit under qemu took $(($(now_ms) - started)) ms"
[ "$status" = 0 ] || fail "exit code $status after SIGTERM"
check "SIGTERM: exit code 0 ($(tail -1 "$work/out"))"

echo "arm64: all checks passed"
