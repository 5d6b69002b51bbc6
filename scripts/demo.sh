#!/usr/bin/env bash
# Quick start: prepares this host and runs one real ember-ci job end to end
# on the embedded demo (examples/demo): a local git repository stands in for
# embercsi/ember-csi, PR #129 builds the demo plugin inside a privileged
# Podman sandbox, starts it, runs the demo sanity suite and prints the
# commit statuses (no GitHub account needed). Then PR #130, broken on
# purpose, shows a failure. Run as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
bash scripts/ensure-rust.sh
export PATH="$HOME/.cargo/bin:$PATH"

state=${EMBER_CI_STATE_DIR:-/var/lib/ember-ci}
export EMBER_CI_STATE_DIR=$state
export EMBER_CI_DEMO_REPO=$state/demo/ember-csi.git
echo "[demo] building ember-ci"
cargo build --quiet --bin ember-ci
bin=target/debug/ember-ci
bash scripts/make-demo-repo.sh "$EMBER_CI_DEMO_REPO" >/dev/null
"$bin" check-config examples/demo

echo "[demo] PR #129 (expected: success)"
"$bin" run --config examples/demo --pr 129
echo "[demo] PR #130 (broken on purpose; expected: failure)"
set +e
"$bin" run --config examples/demo --pr 130
code=$?
set -e
if [ "$code" -ne 1 ]; then
  echo "[demo] PR #130 should have failed with exit code 1, got $code" >&2
  exit 1
fi
echo "[demo] done: #129 passed, #130 failed as it should; logs under $state/logs"
