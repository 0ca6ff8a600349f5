# Sourced at the start of a GPU-machine command: installs the carried wheels (.whl, built here by
# `bash benchmarks/device_wheels.sh`) beside the machine's own torch/triton, and the project.
# Prints the GPU and the library versions the run used.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
# The project itself, installed as the images install it: its package maps components/ and
# pipelines/ into liger_bench, and the grid reads the pipeline's defaults from the installed module.
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/site . || return 1
rm -rf build
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
source benchmarks/device_jobs.sh  # detach / await: a job longer than one call
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# Also whether Python may write .pyc files: the wheels install without them (--no-compile), so where it may
# not, every process compiles the carried modules again (about 1 s a process, measured on a 2-core CPU).
python3 -c "import sys, torch, triton, transformers, trl, liger_kernel, datasets; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__, 'writes .pyc', not sys.dont_write_bytecode)"
# The device returns at most 8 files from $OUT: write a call's results under another folder and run
# `keep_out DIR &` beside them; DIR comes back as $OUT/results.tgz, refreshed every 20 s, so a call cut
# at its time limit still returns every run that had finished. End the call with `keep_out DIR once`.
keep_out() {
    while true; do
        tar czf "$OUT/results.tgz.part" -C "$1" . 2>/dev/null && mv "$OUT/results.tgz.part" "$OUT/results.tgz"
        [ "$2" = once ] && return
        sleep 20
    done
}
