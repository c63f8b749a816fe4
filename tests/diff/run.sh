#!/usr/bin/env bash
# Differential test: Gatehouse's Cerbos API against the real Cerbos 0.55.0 on generated
# CheckResources requests (tests/it/api_diff.rs). Installs the Cerbos binary from npm into
# .tools/cerbos once. Set GATEHOUSE_DIFF_ALLOW_MISMATCHES=1 to report without failing;
# GATEHOUSE_DIFF_REQUESTS and GATEHOUSE_DIFF_SEED change the corpus-based workload,
# GATEHOUSE_DIFF_GEN_SEEDS and GATEHOUSE_DIFF_GEN_REQUESTS the generated-policy one
# (tests/it/api_diff/generated.rs); expr_diff compares expressions (tests/it/expr_diff.rs,
# GATEHOUSE_EXPR_DIFF_COUNT, GATEHOUSE_EXPR_DIFF_SEED); GATEHOUSE_DIFF_PLAN_SEEDS,
# GATEHOUSE_DIFF_PLAN_REQUESTS and GATEHOUSE_DIFF_PLAN_TWIN=1 drive the PlanResources one
# (tests/it/api_diff/plan_generated.rs). GATEHOUSE_DIFF_LARGE=1 runs only the generated-policy
# one at the issue-11 size instead: 5 seeds x warn and reject x 2,000 = 20,000 requests,
# printing the decision mix per seed and mode and the totals.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/.tools/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"
if [ -z "${CERBOS_BIN:-}" ] && [ ! -x "$bin" ]; then
  npm install --silent --no-audit --no-fund --prefix "$root/.tools/cerbos" @cerbos/cerbos-linux-x64@0.55.0
fi
cd "$root"
if [ "${GATEHOUSE_DIFF_LARGE:-}" = 1 ]; then
  export GATEHOUSE_DIFF_GEN_SEEDS="${GATEHOUSE_DIFF_GEN_SEEDS:-1,2,3,4,5}"
  export GATEHOUSE_DIFF_GEN_REQUESTS="${GATEHOUSE_DIFF_GEN_REQUESTS:-2000}"
  exec cargo test --test it -- --ignored --nocapture api_diff_generated_policies
fi
exec cargo test --test it -- --ignored --nocapture api_diff compile_diff expr_diff
