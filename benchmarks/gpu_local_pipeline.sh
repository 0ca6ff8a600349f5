#!/usr/bin/env bash
# The whole pipeline through kfp's local runner on one GPU, as a workstation user runs it:
# Phi-3-mini's architecture (3.8B, random weights) on one of gpu_benchmark.py's workloads
# (WORKLOAD, default "variable": alpaca-like variable-length rows), the four variants (the
# pipeline's use_liger × torch_compile defaults) at BATCH_SIZES (default "8, 16"), one repeat,
# MAX_STEPS steps (default the pipeline's 100), 3 skipped. Copies the report, summary, table and log
# to OUT_DIR, and the runs' records as records.tgz (benchmarks/rerender_local.py renders them again).
# Usage, after `source benchmarks/device_env.sh`: bash benchmarks/gpu_local_pipeline.sh OUT_DIR
# Options: PRESET (an embedded model preset, default phi3-mini; llama3-8b: Llama-3-8B's shape, 128k
# vocabulary), N_RUNS (default 1), TORCH_COMPILE (default "false, true"), KERNEL_ABLATION (default off),
# FRONTIER_SEARCH (default: the pipeline's, true: a search per variant; for Phi-3 on an H200 ~8 probes of
# ~20 s from the grid's batch 16 to the fits 42 and 62 at 512 tokens, ~3 min each: benchmarks/results/README.md's
# fifth session).
# Issue 25's attribution: a run costs 16-27 s beyond its steps (11-20 s of it imports), so Phi-3's
# kernel_ablation=both at batch 16 × 30 steps took 6 min 55 s for one repeat and 12 min 44 s for two
# (benchmarks/results/README.md, sixth and seventh sessions): longer than a device call, so detach it and
# await it over several calls (benchmarks/device_jobs.sh), e.g. `detach both env KERNEL_ABLATION=both N_RUNS=2
# MAX_STEPS=30 TORCH_COMPILE=false BATCH_SIZES=16 WORKLOAD=fixed FRONTIER_SEARCH=false bash
# benchmarks/gpu_local_pipeline.sh /tmp/res/phi3; await both 560`, then `await both 560` at once in each next
# call. Llama-3-8B's shape (PRESET=llama3-8b) at its baseline's largest fit, BATCH_SIZES=21: an estimate of
# ~50 s a run (its frontier probes' steps phase, 2 steps after the first: 1.6 s at batch 16 and 2.0 s at 20,
# so ~1 s a step, 30 s for 30 steps, plus ~20 s of process), so two repeats of its 10 arms are ~17 min.
set -euo pipefail
out=$1
read -r model dataset < <(python3 - "${WORKLOAD:-variable}" "${PRESET:-phi3-mini}" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from gpu_benchmark import WORKLOADS

from liger_bench.inputs.embedded import ensure_embedded

print(*ensure_embedded(Path("/tmp/cache"), preset=sys.argv[2], **WORKLOADS[sys.argv[1]]))
PY
)
python3 -m liger_bench.cli.main local --output-dir /tmp/local-run \
  --param model_name="\"$model\"" --param dataset_name="\"$dataset\"" \
  --param "per_device_train_batch_size=[${BATCH_SIZES:-8, 16}]" --param 'max_seq_length=[512]' \
  --param "n_runs=${N_RUNS:-1}" --param "max_steps=${MAX_STEPS:-100}" --param warmup_steps_to_skip=3 \
  --param "torch_compile=[${TORCH_COMPILE:-false, true}]" --param "kernel_ablation=\"${KERNEL_ABLATION:-off}\"" \
  ${FRONTIER_SEARCH:+--param "frontier_search=$FRONTIER_SEARCH"} \
  >"$out/local-run.log" 2>&1 || status=$?
grep -a "\[liger-bench\]" "$out/local-run.log" || true
results=$(dirname "$(ls -d /tmp/local-run/pipeline_root/*/analyze-results/report | tail -1)")
cp "$results/report" "$out/report.html"
cp "$results/summary" "$out/summary.md"
cp "$results/table" "$out/analysis.csv"
# The runs' own records, so that a later analysis can render this run again (benchmarks/rerender_local.py).
python3 benchmarks/rerender_local.py pack "$(dirname "$results")" "$out/records.tgz" || echo "records not packed"
exit "${status:-0}"
