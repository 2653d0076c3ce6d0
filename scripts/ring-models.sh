#!/usr/bin/env bash
# The ring's model checks, outside .ci/run (see docs/ring.md, "Tests"):
#   * loom: every interleaving of the index protocol with tiny capacities
#     (`crates/ring/src/tests/loom_protocol.rs`), built with `--cfg loom` in
#     its own target directory so the normal build cache stays warm;
#   * Miri: the heap-backed ring tests under Miri (needs a nightly toolchain
#     with the miri component; Miri cannot map memfds).
# Usage: scripts/ring-models.sh [loom|miri|all]   (default: all)
# Miri is skipped with a loud note when no nightly toolchain with miri is
# installed; loom always runs.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
start=$(date +%s)

if [ "$what" = loom ] || [ "$what" = all ]; then
  echo "=== loom models of the ring's index protocol"
  RUSTFLAGS="--cfg loom" cargo test -p hostmux-ring --release --lib \
    --target-dir target/loom loom
fi

if [ "$what" = miri ] || [ "$what" = all ]; then
  if cargo +nightly miri --version >/dev/null 2>&1; then
    echo "=== Miri on the heap-backed ring tests"
    MIRIFLAGS=-Zmiri-disable-weak-memory-emulation \
      cargo +nightly miri test -p hostmux-ring --lib -- tests::heap
  else
    echo "=== Miri NOT RUN: no nightly toolchain with miri" \
         "(rustup toolchain install nightly --component miri)"
    [ "$what" = miri ] && exit 1
  fi
fi
echo "=== ring models done in $(( $(date +%s) - start ))s"
