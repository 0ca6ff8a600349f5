#!/usr/bin/env bash
# Why a training process died importing transformers on the H200 (results README, seventh session):
# `pip install --upgrade --target DIR` into a folder that another process imports from. pip deletes each
# installed package before moving the new copy in, so an import in that window fails. Fresh processes
# import transformers.TrainerCallback from DIR while the carried transformers wheel (.whl, from
# benchmarks/device_wheels.sh) is reinstalled into it REINSTALLS times, as device_env.sh did on every call.
# Usage: bash benchmarks/reinstall_race.sh [REINSTALLS]   (prints how many imports ran and how many failed)
set -u
python=${PYTHON:-.venv/bin/python}
wheels=(.whl/transformers-*.whl)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "need exactly one .whl/transformers-*.whl" >&2; exit 1; }
wheel=${wheels[0]}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$python" -m pip install -q --no-index --no-deps --no-compile --target "$dir/site" "$wheel" || exit 1
"$python" -c "import sys; sys.path.insert(0, '$dir/site'); from transformers import TrainerCallback" || exit 1
(
    for _ in $(seq "${1:-3}"); do
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$dir/site" "$wheel" 2>/dev/null
    done
    touch "$dir/done"  # also where pip fails: the loop below must end
) &
imports=0 failed=0
while [ ! -f "$dir/done" ]; do
    imports=$((imports + 1))
    if ! PYTHONPATH=$dir/site PYTHONDONTWRITEBYTECODE=1 "$python" -c "from transformers import TrainerCallback" 2>"$dir/err"; then
        failed=$((failed + 1))
        tail -n 1 "$dir/err"
    fi
done
echo "imports while reinstalling: $imports, failed: $failed"
