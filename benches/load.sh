#!/usr/bin/env bash
# Load comparison, side by side on one machine: Gatehouse (release build) and the real
# Cerbos 0.55 serve the same policies (../shared/bench/policies) and answer the same
# CheckResources request (../shared/bench/check_resources.json), over gRPC (h2load) and
# HTTP (wrk); then Gatehouse's ext_authz Check for the same decision (bob reads doc-1,
# principal from a verified bearer JWT, resource attributes from headers) beside the empty
# tonic ext_authz server of examples/empty_authz.rs (always OK: the ceiling).
#
#   bash benches/load.sh            # 10 s per run after 2 s of warm-up
#   LOAD_SECONDS=30 bash benches/load.sh
#
# Needs wrk and h2load (Debian: apt-get install wrk nghttp2-client). Installs the Cerbos
# binary from npm into .tools/cerbos and the Python packages of tests/e2e into .venv when
# they are missing. Everything listens on 127.0.0.1 and is stopped at exit. Not part of
# the test suite: numbers depend on the machine; compare the ratios.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bench="${GATEHOUSE_BENCH_DIR:-$root/../shared/bench}"
seconds="${LOAD_SECONDS:-10}"
warmup=2

for tool in wrk h2load; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install wrk nghttp2-client)" >&2; exit 2; }
done
cerbos="$root/.tools/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
if [ ! -x "$cerbos" ]; then
  npm install --silent --no-audit --no-fund --prefix "$root/.tools/cerbos" @cerbos/cerbos-linux-x64@0.55.0
fi
if ! .venv/bin/python -c "import cerbos, jwt" >/dev/null 2>&1; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi
cargo build --release --locked -q --bin gatehouse --example empty_authz
gatehouse="${CARGO_TARGET_DIR:-$root/target}/release/gatehouse"
empty_authz="${CARGO_TARGET_DIR:-$root/target}/release/examples/empty_authz"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cerbos_http=$(port); cerbos_grpc=$(port); gh_http=$(port); gh_grpc=$(port); empty_grpc=$(port); gh_admin=$(port)

# The ceiling: a tonic ext_authz server that always says OK (examples/empty_authz.rs).
"$empty_authz" "127.0.0.1:$empty_grpc" >"$work/empty.log" 2>&1 &
pids+=($!)

"$cerbos" server \
  --set=storage.driver=disk --set="storage.disk.directory=$bench/policies" \
  --set="server.httpListenAddr=127.0.0.1:$cerbos_http" --set="server.grpcListenAddr=127.0.0.1:$cerbos_grpc" \
  --log-level=error >"$work/cerbos.log" 2>&1 &
pids+=($!)

cat >"$work/gatehouse.yaml" <<EOF
server: {grpcListenAddr: "127.0.0.1:$gh_grpc", httpListenAddr: "127.0.0.1:$gh_http", adminListenAddr: "127.0.0.1:$gh_admin"}
policies: {directory: "$bench/policies"}
audit: {mode: off}
extAuthz:
  principal:
    sources:
      - jwt:
          jwks: {file: "$root/examples/fastapi/dev-jwks.json"}
          algorithms: [RS256]
          issuer: https://auth.example.test
          audiences: [documents-api]
    claims: {id: sub, roles: roles, attr: [department, clearances, approval_limit]}
  routes:
    - path: /documents/{id}
      methods: [GET]
      resource: {kind: document, id: "{id}"}
      action: read
      attributes:
        headers: {owner: x-doc-owner, department: x-doc-department, status: x-doc-status,
                  classification: x-doc-classification}
EOF
"$gatehouse" serve --config "$work/gatehouse.yaml" >"$work/gatehouse.log" 2>&1 &
pids+=($!)

for url in "http://127.0.0.1:$cerbos_http/_cerbos/health" "http://127.0.0.1:$gh_http/health"; do
  for _ in $(seq 100); do curl -fs "$url" >/dev/null && break; sleep 0.1; done
  curl -fs "$url" >/dev/null || { echo "not ready: $url" >&2; cat "$work"/*.log >&2; exit 1; }
done

token=$(.venv/bin/python examples/fastapi/mint_token.py bob)
.venv/bin/python benches/load/encode.py "$bench/check_resources.json" "$token" "$work"

# Both must give the expected decisions before anything is timed.
for http in "$cerbos_http" "$gh_http"; do
  got=$(curl -fs -X POST -H 'content-type: application/json' \
    --data-binary @"$bench/check_resources.json" "http://127.0.0.1:$http/api/check/resources" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["results"][0]["actions"], sort_keys=True))')
  want=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True))' "$bench/expected.json")
  [ "$got" = "$want" ] || { echo "port $http answered $got, expected $want" >&2; exit 1; }
done

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local f = io.open("$bench/check_resources.json", "rb")
wrk.body = f:read("*a")
f:close()
EOF

# h2load prints no percentiles: they come from its per-request log (elapsed µs, column 3).
percentiles() {
  python3 - "$1" <<'EOF'
import sys
xs = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] / 1000
print(f"{pick(0.5):.2f} {pick(0.99):.2f}")
EOF
}

results=()
grpc_run() { # name port path body clients
  local log="$work/h2load-$RANDOM.log"
  local out
  out=$(h2load -c "$5" -m 1 -t 1 -D "$seconds" --warm-up-time="$warmup" --log-file="$log" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$4" "http://127.0.0.1:$2$3")
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; exit 1; }
  local rps
  rps=$(sed -n 's/.*finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  results+=("$1|$5|$rps|$(percentiles "$log")")
}
http_run() { # name port clients
  local out
  out=$(wrk -t 2 -c "$3" -d "${seconds}s" --latency -s "$work/post.lua" "http://127.0.0.1:$2/api/check/resources")
  grep -q "Non-2xx" <<<"$out" && { echo "$out" >&2; exit 1; }
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  results+=("$1|$3|$rps|$(python3 -c 'import sys
def ms(v): return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
print(f"{ms(sys.argv[1]):.2f} {ms(sys.argv[2]):.2f}")' "$p50" "$p99")")
}

svc=/cerbos.svc.v1.CerbosService/CheckResources
for c in 1 64; do
  grpc_run "Cerbos 0.55 CheckResources gRPC" "$cerbos_grpc" "$svc" "$work/check_resources.bin" "$c"
  grpc_run "Gatehouse CheckResources gRPC" "$gh_grpc" "$svc" "$work/check_resources.bin" "$c"
done
http_run "Cerbos 0.55 CheckResources HTTP" "$cerbos_http" 64
http_run "Gatehouse CheckResources HTTP" "$gh_http" 64

# ext_authz: the same decision as Envoy would ask it (read doc-1 as bob), beside the
# empty server (the ceiling); the empty server must answer grpc-status 0 first.
authz=/envoy.service.auth.v3.Authorization/Check
for _ in $(seq 100); do
  st=$(curl -s --http2-prior-knowledge -o /dev/null -D - -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary @"$work/ext_authz_check.bin" "http://127.0.0.1:$empty_grpc$authz" | tr -d '\r' | sed -n 's/^grpc-status: //p') || true
  [ "$st" = 0 ] && break
  sleep 0.1
done
[ "$st" = 0 ] || { echo "empty ext_authz server did not answer OK" >&2; exit 1; }
for c in 1 64; do
  grpc_run "empty tonic ext_authz server (always OK)" "$empty_grpc" "$authz" "$work/ext_authz_check.bin" "$c"
  grpc_run "Gatehouse ext_authz Check (JWT + route + policy)" "$gh_grpc" "$authz" "$work/ext_authz_check.bin" "$c"
done

# h2load counts HTTP 200s; the decisions themselves are checked in Gatehouse's metrics:
# every timed ext_authz Check allowed, and every gRPC/HTTP CheckResources call decided
# read=allow, update=deny, approve=allow.
curl -fs "http://127.0.0.1:$gh_admin/metrics" | python3 -c '
import re, sys
counts = {}
for line in sys.stdin:
    m = re.match(r"gatehouse_decisions_total\{effect=\"(\w+)\",kind=\"document\",action=\"(\w+)\",origin=\"(\w+)\"\} (\d+)", line)
    if m:
        counts[m.group(3), m.group(2), m.group(1)] = int(m.group(4))
authz_allow = counts.get(("ext_authz", "read", "allow"), 0)
authz_deny = counts.get(("ext_authz", "read", "deny"), 0)
api = [counts.get(("api", a, e), 0) for a, e in [("read", "allow"), ("update", "deny"), ("approve", "allow")]]
wrong = sum(v for k, v in counts.items() if k not in {("ext_authz", "read", "allow"), ("api", "read", "allow"), ("api", "update", "deny"), ("api", "approve", "allow")})
print(f"decisions checked: ext_authz allow={authz_allow} deny={authz_deny}; api read/update/approve={api}; unexpected={wrong}")
sys.exit(0 if authz_allow > 0 and authz_deny == 0 and len(set(api)) == 1 and api[0] > 0 and wrong == 0 else 1)
'

echo
echo "| scenario | concurrency | req/s | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  IFS='|' read -r name c rps lat <<<"$r"
  read -r p50 p99 <<<"$lat"
  printf '| %s | %s | %.0f | %s | %s |\n' "$name" "$c" "$rps" "$p50" "$p99"
done
