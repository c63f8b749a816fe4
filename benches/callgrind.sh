#!/usr/bin/env bash
# Instructions per ext_authz decision (or, with `api`, per CheckResources call), counted by
# valgrind's callgrind (stable on a busy machine, unlike wall-clock time): the in-process
# decision loop of benches/extauthz.rs (CheckRequest bytes in, CheckResponse bytes out:
# decoding, mapping, bearer JWT, engine, metrics, audit record, response encoded as the gRPC
# service does; or benches/api.rs: CheckResources request bytes in, response bytes out) is
# run twice, with N1 and N2 decisions; the difference divided by N2 - N1 is
# the cost of one decision without the setup. Every thread is counted (the audit writer
# included).
#
#   benches/callgrind.sh                 # audit off and audit on
#   benches/callgrind.sh audit_on        # one scenario
#   benches/callgrind.sh built_off       # audit off, the response built as a prost message
#                                        # and encoded by prost (the path before #15)
#   GATEHOUSE_BENCH_REQUEST=envoy benches/callgrind.sh   # the request as Envoy sends it
#   CALLGRIND_KEEP=dir benches/callgrind.sh   # keep the callgrind.out files (for
#                                        # callgrind_annotate --inclusive=yes)
#   benches/callgrind.sh api             # instructions per Cerbos-compatible CheckResources
#                                        # call, gRPC and HTTP (benches/api.rs: request
#                                        # bytes in, response bytes out, in process)
#   benches/callgrind.sh api http        # one of them
#   benches/callgrind.sh scale           # instructions per engine check and per plan
#                                        # with 1, 100, 1,000 and 10,000 generated
#                                        # policies (SCALE_SIZES, N decisions each)
#
# The scale mode runs the loop of benches/engine.rs on each store of
# benches/scale/generate.py (the requests of benches/scale.sh, in process: the engine's
# part, the one that depends on the number of policies) and counts only the measured loops
# (--toggle-collect), after one warm-up check and plan.
#
# Needs valgrind (Debian: apt-get install valgrind). Builds the bench in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }

if [ "${1:-}" = scale ]; then
  n=${N:-1000}
  bin=$(cargo build --release --bench engine --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])')
  [ -x "$bin" ] || { echo "bench binary not built" >&2; exit 1; }
  out=${CALLGRIND_KEEP:-$(mktemp -d)}
  mkdir -p "$out"
  echo "| policies | instructions per check | instructions per plan |"
  echo "|---:|---:|---:|"
  for size in ${SCALE_SIZES:-1 100 1000 10000}; do
    python3 benches/scale/generate.py "$size" "$out/store.$size"
    GATEHOUSE_BENCH_LOOP=$n GATEHOUSE_SCALE_DIR="$out/store.$size" valgrind --tool=callgrind \
      --collect-atstart=no --toggle-collect='*scale_checks*' --toggle-collect='*scale_plans*' \
      --callgrind-out-file="$out/callgrind.out.scale.$size" "$bin" \
      2>"$out/valgrind.scale.$size.log" >/dev/null
    per() { # function -> instructions per call of the loop body
      callgrind_annotate --inclusive=yes "$out/callgrind.out.scale.$size" |
        awk -v f="$1" -v n="$n" '$0 ~ f { gsub(",", "", $1); printf "%d", $1 / n; exit }'
    }
    echo "| $size | $(per scale_checks) | $(per scale_plans) |"
  done
  [ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$out"
  exit 0
fi

n1=${N1:-500}
n2=${N2:-2500}
bench=extauthz
unit=decision
if [ "${1:-}" = api ]; then
  shift
  bench=api
  unit=call
fi
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  if [ "$bench" = api ]; then scenarios=(grpc http); else scenarios=(audit_off audit_on); fi
fi

bin=$(cargo build --release --bench "$bench" --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$bench")
[ -x "$bin" ] || { echo "bench binary not built" >&2; exit 1; }

out=${CALLGRIND_KEEP:-$(mktemp -d)}
mkdir -p "$out"
count() { # scenario calls -> total instructions
  GATEHOUSE_BENCH_LOOP=$2 GATEHOUSE_BENCH_SCENARIO=$1 valgrind --tool=callgrind \
    --callgrind-out-file="$out/callgrind.out.$1.$2" "$bin" 2>"$out/valgrind.$1.$2.log" >/dev/null
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/valgrind.$1.$2.log"
}
for s in "${scenarios[@]}"; do
  a=$(count "$s" "$n1")
  b=$(count "$s" "$n2")
  echo "$s: $(( (b - a) / (n2 - n1) )) instructions per $unit ($n1 ${unit}s: $a, $n2: $b)"
done
[ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$out"
