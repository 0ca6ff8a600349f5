"""What each training task receives as input artifacts, with and without a model volume (issue 26, item 2).

On a cluster KFP's launcher copies each input artifact from the object store into the pod before
the component runs: a training task receives download_model's and download_dataset's artifacts.
This script runs the download tasks' work (``tasks.download_model``, ``tasks.download_dataset``) on
the embedded model and dataset twice, as the pipeline does without and with ``--model-volume``, and
prints the bytes of the artifacts a training pod would receive each way, what the volume holds, and
the arithmetic of a sweep of ``--runs`` training pods (default: the pipeline's default grid) for a
model of ``--model-gb``. CPU only::

    python benchmarks/staged_inputs.py                     # the tiny embedded model; Phi-3-mini's arithmetic
    python benchmarks/staged_inputs.py --runs 30           # the sweep of issue 26
    python benchmarks/staged_inputs.py --preset phi3-mini  # writes a 3.8B-parameter random model first
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Download the inputs both ways and print the bytes a training pod receives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="embedded model preset (liger_bench.inputs.embedded)")
    parser.add_argument("--runs", type=int, default=None, help="training pods (default: the default grid's)")
    parser.add_argument("--model-gb", type=float, default=7.6, help="model size for the arithmetic (Phi-3-mini)")
    args = parser.parse_args()

    from liger_bench.inputs.embedded import ensure_embedded
    from liger_bench.plan.grid import GridSpec, expand_grid
    from liger_bench.tasks import download_dataset, download_model

    runs = args.runs or len(expand_grid(GridSpec()))

    model_source, dataset_source = ensure_embedded(preset=args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        root, volume = Path(tmp), Path(tmp) / "volume"
        volume.mkdir()
        received = {}
        for label, staging_dir in (("artifacts hold the files", ""), ("--model-volume", str(volume))):
            model, dataset = root / label / "model", root / label / "dataset"
            model.parent.mkdir()
            download_model(str(model_source), "", model, staging_dir=staging_dir)
            download_dataset(str(dataset_source), "train", "", dataset, staging_dir=staging_dir)
            received[label] = (size(model), size(dataset))
        staged = size(volume)

    print(f"embedded model preset {args.preset!r}; bytes a training pod receives as input artifacts:")
    print(f"{'':26}{'model':>16}{'dataset':>16}{'per pod':>16}")
    for label, (model_bytes, dataset_bytes) in received.items():
        print(f"{label:26}{model_bytes:>16,}{dataset_bytes:>16,}{model_bytes + dataset_bytes:>16,}")
    before, after = (sum(received[label]) for label in received)
    print(f"per pod: {before / after:,.0f} times fewer bytes with the volume, which holds {staged:,} bytes once")

    pointer = sum(received["--model-volume"])
    gb = 1e9
    print(
        f"a sweep of {runs} training pods, model of {args.model_gb} GB: "
        f"{runs * args.model_gb:,.0f} GB copied from the object store without a volume; "
        f"with one, {args.model_gb} GB written once and {runs * pointer / gb * 1e6:,.1f} kB of pointers"
    )


if __name__ == "__main__":
    main()
