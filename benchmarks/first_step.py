"""How long a training task takes to reach its first step on a large dataset (issue 20, item 8).

Writes an alpaca-format dataset of ``--rows`` generated rows (the embedded generator), prepares it
with ``tasks.download_dataset`` as the pipeline does, then trains one grid point of the embedded
tiny model with ``training.run_training`` (the code a training task runs) and prints: the time
from the start of the run to its first training step, the part of it spent loading the model, the
rest (data preparation and Trainer setup), and the process's peak memory before and after the run.
CPU only::

    python benchmarks/first_step.py --rows 200000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Prepare the dataset, train one short run, print where the time to its first step went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the generated dataset")
    parser.add_argument("--max-steps", type=int, default=5, help="optimizer steps of the run")
    parser.add_argument("--batch-size", type=int, default=2, help="per_device_train_batch_size")
    parser.add_argument("--max-seq-length", type=int, default=128, help="max_seq_length")
    args = parser.parse_args()

    from transformers import TrainerCallback

    from liger_bench import training
    from liger_bench.inputs.embedded import ensure_embedded, make_alpaca_rows, write_dataset
    from liger_bench.plan.config import TrainConfig
    from liger_bench.tasks import download_dataset

    marks: dict[str, float] = {}
    load_model = training.load_model

    def timed_load_model(*load_args, **load_kwargs):
        marks["model_load_start"] = time.perf_counter()
        model = load_model(*load_args, **load_kwargs)
        marks["model_loaded"] = time.perf_counter()
        return model

    class FirstStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            marks.setdefault("first_step", time.perf_counter())

    training.load_model = timed_load_model  # the run's own loader, wrapped to read the clock around it
    with tempfile.TemporaryDirectory(prefix="liger-bench-first-step-") as tmp:
        model_dir, _ = ensure_embedded(Path(tmp) / "embedded")
        source = write_dataset(Path(tmp) / "source", make_alpaca_rows(args.rows, seed=0))
        started = time.perf_counter()
        info = download_dataset(str(source), "train", "", Path(tmp) / "prepared")
        prepared_s = time.perf_counter() - started
        config = TrainConfig(
            run_key="first-step",
            per_device_train_batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
            max_steps=args.max_steps,
            warmup_steps_to_skip=1,
        )
        peak_before_run = _peak_rss_gib()
        started = time.perf_counter()
        result, steps = training.run_training(config, str(model_dir), str(Path(tmp) / "prepared"), [FirstStep()])
    to_first_step = marks["first_step"] - started
    model_load = marks["model_loaded"] - marks["model_load_start"]
    print(f"dataset: {info['rows']:,} rows prepared by download_dataset in {prepared_s:.1f} s")
    print(f"run: status {result.status}, {len(steps)} steps, data {result.data}")
    print(f"start of the run -> first training step: {to_first_step:.1f} s")
    print(f"  of which loading the model:          {model_load:.1f} s")
    print(f"  the rest (data, Trainer setup):      {to_first_step - model_load:.1f} s")
    print(f"peak resident memory before the run:   {peak_before_run:.2f} GiB (generating and preparing the data)")
    print(f"peak resident memory after the run:    {_peak_rss_gib():.2f} GiB")


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


if __name__ == "__main__":
    main()
