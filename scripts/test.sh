#!/usr/bin/env bash
# Sets up this host and runs every check CI runs: formatting, clippy with
# warnings as errors, all tests (unit, real-Podman end to end, browser),
# and the fuzz targets for a bounded time. Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup-host.sh
bash scripts/ensure-rust.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "[test] cargo test"
cargo test --all-targets --quiet
echo "[test] fuzz targets, bounded time"
bash scripts/fuzz.sh
echo "[test] all checks passed in $(( $(date +%s) - start )) s"
