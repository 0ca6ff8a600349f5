#!/usr/bin/env bash
# Builds .whl/, the wheels every GPU-machine call carries (`carry: [".whl"]`) and device_env.sh installs
# over the machine's own packages: the project's pins (src/liger_bench/versions.py) that the machine's
# image lacks or holds at another version, and the packages those need that it lacks (its list:
# ../.library/device/KINDS.md). torch, triton, accelerate, tokenizers, huggingface-hub and the rest are
# the machine's own. About 25 MiB of the 64 a call may carry. Usage, here, in the repository's root:
#   bash benchmarks/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The pins, read from the one place that declares them.
pinned=$(python3 - <<'PY'
import runpy

pins = runpy.run_path("src/liger_bench/versions.py")["PINS"]
names = ["transformers", "trl", "datasets", "liger-kernel", "nvidia-ml-py", "kfp", "kfp-kubernetes"]
print(" ".join(f"{name}=={pins[name]}" for name in names))
PY
)
# What they need that the machine lacks, at the versions the sixth H200 session ran
# (benchmarks/results/README.md): datasets' dill and multiprocess, and kfp's client libraries.
needed="dill==0.4.1 multiprocess==0.70.19 kfp-pipeline-spec==2.17.3 kfp-server-api==2.17.3
google-api-core==2.44.0 google-auth==2.63.0 google-cloud-storage==3.17.1 google-cloud-core==2.8.0
google-crc32c==1.9.0 google-resumable-media==2.11.0 googleapis-common-protos==1.76.0 proto-plus==1.29.0
protobuf==6.33.6 opentelemetry-api==1.45.2 importlib-metadata==9.1.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 click-option-group==0.5.7 docstring-parser==0.18.0
oauthlib==4.0.1 requests-oauthlib==2.0.0 requests-toolbelt==1.0.0 websocket-client==1.9.2 kubernetes==30.1.0"
mkdir -p .whl  # ignored by .gitignore
for spec in $pinned $needed; do
    if [ "${spec%%==*}" = kfp-server-api ]; then
        # Published only as source, and pure Python: a wheel built here runs there.
        python3 -m pip wheel -q --no-deps -w .whl "$spec"
    else  # for the machine's Python (3.12, x86-64 manylinux), whatever this machine runs
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d .whl "$spec"
    fi
done
ls .whl | wc -l | xargs echo "wheels in .whl:"
du -sh .whl
