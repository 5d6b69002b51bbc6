#!/usr/bin/env bash
# Sets up this host and runs every check CI runs: formatting, clippy with
# warnings as errors, all tests (unit, real-Podman end to end, browser on
# Debian's chromium), and the fuzz targets for a bounded time. Run as root
# on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup-host.sh --with-browser
# The local registry mirroring docker.io (tests pull public names through it);
# stopped when the checks end.
bash scripts/local-registry.sh seed localhost/debian:bookworm docker.io/library/debian:bookworm
trap 'bash scripts/local-registry.sh stop' EXIT
bash scripts/ensure-rust.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Podman 5's quadlet generator for the unit test (cached under /var/cache).
bash scripts/quadlet-generator.sh >/dev/null
# The systemd host of the quadlet deploy test (Debian 13, cached image).
bash scripts/systemd-host.sh >/dev/null

# The browser test's npm packages (playwright-core), reinstalled only when
# the lock file changes.
lock_sum=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
stamp=tests/browser/node_modules/.installed-lock-sha256
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  echo "[test] npm ci (tests/browser)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund --silent
  echo "$lock_sum" >"$stamp"
fi

echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "[test] cargo test"
cargo test --all-targets --quiet
echo "[test] fuzz targets, bounded time"
bash scripts/fuzz.sh
echo "[test] all checks passed in $(( $(date +%s) - start )) s"
