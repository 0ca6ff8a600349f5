"""benchmarks/results/memory-model.md shows what benchmarks/memory_model.py prints, and its check holds."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_tables_are_the_scripts_output():
    script = ROOT / "benchmarks" / "memory_model.py"
    output = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    committed = (ROOT / "benchmarks" / "results" / "memory-model.md").read_text()
    assert committed.endswith(output)
    assert "Largest error: -6.0%." in output


def test_the_check_against_a_searched_frontier_reports_the_models_error(tmp_path):
    """Hand-computed: Phi-3-mini's weights and AdamW states are 6 B × 3,821,079,552 = 21.35 GiB; a
    sequence of 512 tokens adds 512 × 4,973,696 B = 2.372 GiB stock, 512 × 3,342,336 B = 1.594 GiB
    with Liger (plus its 0.18 GiB LM-head gradient). Under 139.8 GiB: stock ⌊118.45 / 2.372⌋ = 49,
    Liger ⌊118.26 / 1.594⌋ = 74."""

    def probe(batch, status, allocated):
        return {
            "per_device_train_batch_size": batch,
            "status": status,
            "reason": "",
            "peak_mem_reserved_gb": None if allocated is None else allocated + 2.0,
            "peak_mem_allocated_gb": allocated,
            "elapsed_s": 30.0,
            "gpu_memory_gb": 139.8,
        }

    frontiers = [
        {"variant": "baseline", "max_seq_length": 512, "largest_fit": 40, "smallest_oom": 48, "end": "resolved",
         "reason": "", "probes": [probe(32, "ok", 82.0), probe(48, "oom", None), probe(40, "ok", 100.0)]},
        {"variant": "liger", "max_seq_length": 512, "largest_fit": 48, "smallest_oom": 64, "end": "resolved",
         "reason": "", "probes": [probe(64, "oom", None), probe(48, "ok", 80.0)]},
        {"variant": "compile", "max_seq_length": 512, "largest_fit": None, "smallest_oom": None, "end": "skipped",
         "reason": "frontier_search is false", "probes": []},
    ]  # fmt: skip
    path = tmp_path / "frontier"
    path.write_text(json.dumps({"frontiers": frontiers}))
    script = ROOT / "benchmarks" / "memory_model.py"
    output = subprocess.run(
        [sys.executable, str(script), "--frontier", str(path)], capture_output=True, text=True, check=True
    ).stdout
    # Predicted peak at the searched batch: 21.35 + 40 × 2.372 = 116.2 GiB stock, 21.54 + 48 × 1.594 = 98.0 Liger.
    assert "| baseline | 512 | 40 | 48 | 49 | +22.5 | 100.0 | 116.2 | +16.2 | 139.8 |" in output
    assert "| liger | 512 | 48 | 64 | 74 | +54.2 | 80.0 | 98.0 | +22.5 | 139.8 |" in output
    assert "| compile |" not in output  # skipped: nothing to check
    assert output.rstrip().endswith("Largest frontier error: +54.2%.")
