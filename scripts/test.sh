#!/usr/bin/env bash
# Sets up this host and runs every check CI runs: formatting, clippy with
# warnings as errors, all tests (unit, real-Podman end to end, browser on
# Debian's chromium), and the fuzz targets for a bounded time. Run as root
# on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup-host.sh
bash scripts/ensure-rust.sh
export PATH="$HOME/.cargo/bin:$PATH"

# The browser test (tests/browser.rs) drives Debian's chromium with
# playwright-core from tests/browser/; playwright never downloads a browser.
need_packages=()
command -v chromium >/dev/null 2>&1 || need_packages+=(chromium)
command -v node >/dev/null 2>&1 || need_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "[test] installing ${need_packages[*]} for the browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
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
