#!/usr/bin/env bash
# Quick start: prepares this host and runs one real ember-ci job end to end
# on the embedded demo (examples/demo): a local git repository stands in for
# embercsi/ember-csi, PR #129 builds the demo plugin inside a privileged
# Podman sandbox, starts it, runs the demo sanity suite and prints the
# commit statuses (no GitHub account needed). Then PR #130, broken on
# purpose, shows a failure. Run as root on Debian/Ubuntu.
#
# Quiet by default: one line per stage and per job step, the full output of
# the host setup, the build and each job in log files. `--verbose` (or
# DEMO_VERBOSE=1) streams everything.
set -euo pipefail
cd "$(dirname "$0")/.."
verbose=${DEMO_VERBOSE:-}
[ "${1:-}" = "--verbose" ] && verbose=1

state=${EMBER_CI_STATE_DIR:-/var/lib/ember-ci}
export EMBER_CI_STATE_DIR=$state
export EMBER_CI_DEMO_REPO=$state/demo/ember-csi.git
mkdir -p "$state/demo"

# stage <what> <log name> <command...>: runs it, quietly unless verbose,
# and says how long it took; on failure shows the end of its log.
stage() {
  local what=$1 log=$state/demo/$2.log started=$SECONDS
  shift 2
  if [ -n "$verbose" ]; then
    echo "[demo] $what"
    "$@"
  else
    echo "[demo] $what (log: $log)"
    if ! "$@" >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      echo "[demo] $what failed; full output in $log" >&2
      exit 1
    fi
  fi
  echo "[demo] $what: done in $((SECONDS - started)) s"
}

stage "preparing the host (Podman, runc, base image)" setup-host bash scripts/setup-host.sh
stage "checking the Rust toolchain" ensure-rust bash scripts/ensure-rust.sh
export PATH="$HOME/.cargo/bin:$PATH"
stage "building ember-ci" build cargo build --bin ember-ci
bin=target/debug/ember-ci
bash scripts/make-demo-repo.sh "$EMBER_CI_DEMO_REPO" >/dev/null
"$bin" check-config examples/demo >"$state/demo/check-config.log" \
  || { cat "$state/demo/check-config.log" >&2; exit 1; }

run_args=(run --config examples/demo)
[ -n "$verbose" ] && run_args+=(--verbose)
echo "[demo] PR #129 (expected: success)"
"$bin" "${run_args[@]}" --pr 129
echo "[demo] PR #130 (broken on purpose; expected: failure)"
set +e
"$bin" "${run_args[@]}" --pr 130
code=$?
set -e
if [ "$code" -ne 1 ]; then
  echo "[demo] PR #130 should have failed with exit code 1, got $code" >&2
  exit 1
fi
echo "[demo] done: #129 passed, #130 failed as it should; logs under $state/logs"
