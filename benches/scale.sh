#!/usr/bin/env bash
# Scale benchmark: 1, 100, 1,000 and 10,000 generated resource policies (benches/scale/
# generate.py: derived roles, conditions, some scopes; every request for the same kind),
# Gatehouse (the `release-lto` build, as benches/load.sh's) beside the real Cerbos 0.55. For each size: startup time (spawn
# to healthy), RSS after start, then CheckResources and PlanResources over HTTP (h2load
# --h1) with CPU per request from /proc/<pid>/stat and the peak RSS.
#
#   bash benches/scale.sh                       # sizes 1 100 1000 10000, 5 s per run
#   SCALE_SIZES="1 1000" SCALE_SECONDS=10 bash benches/scale.sh
#   GATEHOUSE_BIN=target/release-lto/gatehouse bash benches/scale.sh  # no build
#   SCALE_CERBOS_MAX=1000 bash benches/scale.sh # skip Cerbos above 1,000 policies (its
#                                               # startup at 10,000 takes minutes)
#   SCALE_START_TIMEOUT=600 bash benches/scale.sh # seconds to become healthy (600)
#
# Needs h2load (Debian: nghttp2-client) and the Cerbos binary in .tools/cerbos (installed
# from npm when missing). Listens on 127.0.0.1 only; stops what it started. A benchmark,
# not a test: compare the columns of one run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sizes="${SCALE_SIZES:-1 100 1000 10000}"
seconds="${SCALE_SECONDS:-5}"
cerbos_max="${SCALE_CERBOS_MAX:-100000}"
clients="${SCALE_CLIENTS:-16}"
start_timeout="${SCALE_START_TIMEOUT:-600}"  # seconds; Cerbos 0.55 took 91 s at 10,000
command -v h2load >/dev/null || { echo "h2load not found (apt-get install nghttp2-client)" >&2; exit 2; }
cerbos="$root/.tools/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
if [ ! -x "$cerbos" ]; then
  npm install --silent --no-audit --no-fund --prefix "$root/.tools/cerbos" @cerbos/cerbos-linux-x64@0.55.0
fi
gatehouse="${GATEHOUSE_BIN:-}"   # a prebuilt binary, else the release-lto build
if [ -z "$gatehouse" ]; then
  cargo build --profile release-lto --locked -q --bin gatehouse
  gatehouse="${CARGO_TARGET_DIR:-$root/target}/release-lto/gatehouse"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk -v k="$2" '$1 == k":" {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# h2load over HTTP/1.1; prints "<requests> <req/s>" after checking that all succeeded.
load() { # url body
  local out
  out=$(h2load --h1 -c "$clients" -t 1 -D "$seconds" --warm-up-time=1 \
    -H 'content-type: application/json' -d "$2" "$1")
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; exit 1; }
  grep -q "status codes: [0-9]* 2xx" <<<"$out" || { echo "$out" >&2; exit 1; }
  local done rps
  done=$(sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p' <<<"$out")
  rps=$(sed -n 's/.*finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  echo "$done $rps"
}

# One server: start, time to healthy, RSS; check the answer; time check and plan.
measure() { # name size dir
  local name=$1 n=$2 dir=$3 http grpc t0 t1
  http=$(port); grpc=$(port)
  t0=$(date +%s.%N)
  if [ "$name" = Gatehouse ]; then
    printf 'server: {grpcListenAddr: "127.0.0.1:%s", httpListenAddr: "127.0.0.1:%s"}\npolicies: {directory: "%s/policies"}\naudit: {mode: off}\n' \
      "$grpc" "$http" "$dir" >"$dir/gatehouse.yaml"
    "$gatehouse" serve --config "$dir/gatehouse.yaml" >"$dir/server.log" 2>&1 &
    health="http://127.0.0.1:$http/health"
  else
    "$cerbos" server --set=storage.driver=disk --set="storage.disk.directory=$dir/policies" \
      --set="server.httpListenAddr=127.0.0.1:$http" --set="server.grpcListenAddr=127.0.0.1:$grpc" \
      --log-level=error >"$dir/server.log" 2>&1 &
    health="http://127.0.0.1:$http/_cerbos/health"
  fi
  pid=$!
  until curl -fs "$health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    [ $(($(date +%s) - ${t0%.*})) -le "$start_timeout" ] ||
      { echo "$name/$n not healthy after $start_timeout s" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  local startup rss_start
  startup=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  rss_start=$(rss_mib "$pid" VmRSS)
  # The decision must be right before anything is timed.
  local got
  got=$(curl -fs -X POST -H 'content-type: application/json' --data-binary @"$dir/check.json" \
    "http://127.0.0.1:$http/api/check/resources" |
    python3 -c 'import json,sys; a=json.load(sys.stdin)["results"][0]["actions"]; print(",".join(f"{k}={v[7:].lower()}" for k,v in sorted(a.items())))')
  [ "$got" = "approve=allow,delete=deny,read=allow,update=allow" ] || { echo "$name/$n answered $got" >&2; exit 1; }
  local c0 c1 check plan cpu_check cpu_plan
  c0=$(cpu_ticks "$pid")
  check=$(load "http://127.0.0.1:$http/api/check/resources" "$dir/check.json")
  c1=$(cpu_ticks "$pid")
  cpu_check=$(python3 -c "print(f'{($c1 - $c0) / $ticks * 1e6 / ${check%% *}:.0f}')")
  c0=$c1
  plan=$(load "http://127.0.0.1:$http/api/plan/resources" "$dir/plan.json")
  c1=$(cpu_ticks "$pid")
  cpu_plan=$(python3 -c "print(f'{($c1 - $c0) / $ticks * 1e6 / ${plan%% *}:.0f}')")
  local peak
  peak=$(rss_mib "$pid" VmHWM)
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # CPU includes warm-up requests h2load does not count: compare columns, not absolutes.
  printf '| %s | %s | %s s | %s MiB | %s MiB | %.0f | %s | %.0f | %s |\n' "$name" "$n" "$startup" \
    "$rss_start" "$peak" "${check#* }" "$cpu_check" "${plan#* }" "$cpu_plan"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $seconds s per run, $clients clients"
echo
echo "| server | policies | startup | RSS after start | peak RSS | check req/s | check CPU µs/req | plan req/s | plan CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
  dir="$work/$n"
  python3 benches/scale/generate.py "$n" "$dir"
  measure Gatehouse "$n" "$dir"
  if [ "$n" -le "$cerbos_max" ]; then measure "Cerbos 0.55" "$n" "$dir"; fi
done
