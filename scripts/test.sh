#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the
# Cerbos conformance corpus (read from ../shared/conformance, or
# $GATEHOUSE_CONFORMANCE_DIR). Installs what it needs by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --locked -- --nocapture 2>&1 | tee target/test-output.log
grep -E "^(engine|cel|parser|schema)[^:]*: [0-9]+ passed, [0-9]+ failed|SKIPPED" target/test-output.log || true
