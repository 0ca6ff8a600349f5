# Sourced at the start of a GPU-machine command: installs the carried wheels (.whl, built here by
# `bash benchmarks/device_wheels.sh`) beside the machine's own torch/triton, and the project.
# Prints the GPU and the library versions the run used.
# Each set of wheels and project sources gets a directory of its own, named by their hash, installed
# once per machine and never changed afterwards: a later call that sources this while a detached job
# still runs must not reinstall under the job's feet (pip --upgrade --target deletes each package
# before it moves the new one in, and a process importing in that window died with
# ModuleNotFoundError in the seventh session; the sixth session's died with the same message;
# benchmarks/reinstall_race.sh reproduces it on a CPU).
# The modules are compiled at install (pip without --no-compile), once: the machine's Python does not
# write .pyc, so otherwise every training process compiles the carried packages again.
# (LIGER_BENCH_SITE_ROOT: another folder than /tmp, for tests.) The hash covers what pip installs.
site_stamp=$( { sha256sum .whl/*.whl; find src components pipelines pyproject.toml -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
site_dir=${LIGER_BENCH_SITE_ROOT:-/tmp}/site-$site_stamp
if [ ! -d "$site_dir" ]; then
    rm -rf "$site_dir.part"
    python3 -m pip install -q --no-index --no-deps --no-cache-dir --target "$site_dir.part" .whl/*.whl || return 1
    # The project itself, installed as the images install it: its package maps components/ and
    # pipelines/ into liger_bench, and the grid reads the pipeline's defaults from the installed module.
    # (--upgrade: its bin/ replaces the wheels' own.)
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$site_dir.part" . || return 1
    rm -rf build
    mv "$site_dir.part" "$site_dir"
fi
export PYTHONPATH="$site_dir" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
source benchmarks/device_jobs.sh  # detach / await: a job longer than one call
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# Also whether Python may write .pyc files (the carried packages' were written at install either way).
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
