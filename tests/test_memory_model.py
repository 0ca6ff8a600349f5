"""benchmarks/results/memory-model.md shows what benchmarks/memory_model.py prints, and its check holds."""

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
