#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets: webhook payload parsing, relayed-body repairs,
# signature checking, the comment-command parser) for a bounded time with
# cargo fuzz (libFuzzer), starting from the seeds in fuzz/seeds. Needs the
# nightly toolchain (installed with rustup when missing) and cargo-fuzz
# (installed from crates.io when missing). A crash fails the script and
# leaves its input under fuzz/artifacts/<target>/.
#   FUZZ_SECONDS   time per target [20]
#   FUZZ_TARGET_DIR  build dir [$CARGO_TARGET_DIR-fuzz, else fuzz/target]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${FUZZ_SECONDS:-20}"
targets=(parse_event verify_signature parse_commands relayed_body)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "[fuzz] installing the nightly toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz from crates.io"
  cargo +nightly install cargo-fuzz --locked
fi
# Nightly with sanitizer flags: a build dir of its own, so these builds
# never replace the stable ones.
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$FUZZ_TARGET_DIR"
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR-fuzz"
else
  export CARGO_TARGET_DIR="$PWD/fuzz/target"
fi

echo "[fuzz] building ${targets[*]}"
cargo +nightly fuzz build
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  corpus="$(mktemp -d)"
  trap 'rm -rf "$corpus"' EXIT
  mkdir -p "fuzz/seeds/$target"
  echo "[fuzz] $target for ${seconds} s"
  cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_funcs=0 -print_final_stats=1
  rm -rf "$corpus"
  trap - EXIT
done
echo "[fuzz] ${targets[*]}: no crash in ${seconds} s each"
