#!/usr/bin/env bash
# The conformance corpus's own oracle (shared/conformance/oracle.py), pointed at the
# gatehouse binary: it drives `gatehouse server` and `gatehouse compile` exactly as it
# drives `cerbos`, and compares the answers with the golden ones. Prints its summary and
# fails when any case disagrees (verify cases whose configuration the CLI cannot express
# are reported as not applicable, as for Cerbos itself).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
corpus="${GATEHOUSE_CONFORMANCE_DIR:-$root/../shared/conformance}"
if [ ! -f "$corpus/oracle.py" ]; then
  if [ "${CI:-}" = "true" ]; then echo "conformance corpus not found at $corpus" >&2; exit 1; fi
  echo "oracle: SKIPPED (no corpus at $corpus)"; exit 0
fi
bin="${GATEHOUSE_BIN:-$root/target/debug/gatehouse}"
python="${PYTHON:-$root/.venv/bin/python}"
summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT
"$python" "$corpus/oracle.py" --cerbos "$bin" --summary "$summary"
"$python" - "$summary" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
bad = []
for group, g in s["engine"]["groups"].items():
    if g["inputsAgreeFull"] != g["inputs"]:
        bad.append(f"engine {group}: {g['inputsAgreeFull']}/{g['inputs']}")
for part in ("api", "junit", "compile", "cel"):
    if s[part]["agree"] != s[part]["cases"]:
        bad.append(f"{part}: {s[part]['agree']}/{s[part]['cases']}")
v = s["verify"]
if v["agreeApplicable"] != v["cases"] - v["notApplicable"]:
    bad.append(f"verify: {v['agreeApplicable']}/{v['cases'] - v['notApplicable']}")
print("oracle: " + ("all agree" if not bad else "DISAGREE: " + "; ".join(bad)))
sys.exit(1 if bad else 0)
PY
