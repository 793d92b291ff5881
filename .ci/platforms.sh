#!/usr/bin/env bash
# The platforms beyond CI's Linux x86_64, checked by hand (not in .ci/run: it needs a
# cross toolchain and qemu, and minutes of building):
#   - Linux aarch64 (arm64 boards): a cross build, then the demo run under qemu-aarch64,
#     then `verify` of its output, under emulation too.
#   - Windows (x86_64-pc-windows-gnu): `cargo check` only; nothing runs there. Not
#     verified on Windows: the directory fsync (a no-op there), SIGINT/SIGTERM handling,
#     and file modes (0600 is a Unix notion).
# macOS is not checked at all.
# Needs: rustup; apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
#        gcc-mingw-w64-x86-64 (the Windows check compiles ring's C code).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add aarch64-unknown-linux-gnu x86_64-pc-windows-gnu

echo "== aarch64: build"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo build --locked --release --target aarch64-unknown-linux-gnu
bin=target/aarch64-unknown-linux-gnu/release/api2csv
file "$bin" 2>/dev/null || true

echo "== aarch64: the demo under qemu"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 "$bin" demo --out "$out/demo" >"$out/demo.log"
tail -n 12 "$out/demo.log"
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 "$bin" verify "$out/demo/mailerlite"
(cd "$out/demo/paligo" && sha256sum -c --quiet SHA256SUMS)

echo "== x86_64-pc-windows-gnu: cargo check"
cargo check --locked --target x86_64-pc-windows-gnu   # the tests are Unix-only (strace, modes)

echo "platforms: ok"
