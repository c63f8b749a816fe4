#!/usr/bin/env bash
# The soak test (issue 12; not part of CI): Envoy + Gatehouse + the FastAPI app for 30
# minutes (by default) at a steady moderate load with policy edits, a JWKS key rotation and
# an attribute-source outage; every answer checked. See tests/soak/soak.py for what it does
# and the options (--duration SECONDS, --rps N, --out DIR). Writes report.md and
# report.json (default target/soak/<time>/) and exits non-zero unless everything held.
#
#   bash scripts/soak.sh                       # 30 minutes
#   nice -n 19 bash scripts/soak.sh --duration 600
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import sys" >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
if [ -z "${GATEHOUSE_BIN:-}" ]; then
  cargo build --locked --bin gatehouse
  target_dir="${CARGO_TARGET_DIR:-target}"
  case "$target_dir" in /*) ;; *) target_dir="$(pwd)/$target_dir" ;; esac
  export GATEHOUSE_BIN="$target_dir/debug/gatehouse"
fi
exec .venv/bin/python tests/soak/soak.py "$@"
