"""The wall time of a Liger run skipped on a machine without CUDA, through the supervisor as train_model runs it.

Three skipped runs of the embedded tiny model, each in its own process; prints each one's status, wall time and its
``[liger-bench]`` phases line (imports among them). Run on a CPU machine: ``python benchmarks/skipped_run_time.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

from liger_bench.inputs.embedded import ensure_embedded
from liger_bench.measure.supervisor import train_supervised
from liger_bench.plan.config import TrainConfig


def main() -> None:
    model_dir, dataset_dir = map(str, ensure_embedded(Path("/tmp/liger-bench-cache"), preset="tiny"))
    for repeat in range(3):
        config = TrainConfig(run_key=f"skipped-{repeat}", use_liger=True, max_seq_length=64)
        started = time.monotonic()
        result, _ = train_supervised(config, model_dir, dataset_dir, timeout_s=300)
        print(f"{config.run_key}: {result.status}, {time.monotonic() - started:.2f} s", flush=True)


if __name__ == "__main__":
    main()
