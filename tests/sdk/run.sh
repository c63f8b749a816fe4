#!/usr/bin/env bash
# Runs the Cerbos Python SDK tests against `gatehouse serve`.
# Installs the SDK into .tools/sdk-venv (once), builds the release binary unless
# GATEHOUSE_BIN is set, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.tools/sdk-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/sdk/requirements.txt"
if [ -z "${GATEHOUSE_BIN:-}" ] && [ -z "${GATEHOUSE_SDK_HTTP:-}" ]; then
  (cd "$root" && cargo build --release --quiet)
fi
cd "$root/tests/sdk"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
