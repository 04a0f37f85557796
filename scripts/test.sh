#!/usr/bin/env bash
# The project's test command (README "Run the tests"): formatting, lints, docs, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
# Fault injection (fail points compiled in only with the `failpoints` feature): one test file.
cargo test -p flowengine --features failpoints --test failpoints
# The library stands alone: no CLI crates without the default `cli` feature.
cargo check -p flowengine --no-default-features --lib
# Instruction-count regression gate (installs gungraun-runner when missing).
bash scripts/regression-gate.sh
