"""benchmarks/results/memory-model.md shows what benchmarks/memory_model.py prints, and its check holds."""

import contextlib
import io
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_tables_are_the_scripts_output():
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        runpy.run_path(str(ROOT / "benchmarks" / "memory_model.py"), run_name="__main__")
    committed = (ROOT / "benchmarks" / "results" / "memory-model.md").read_text()
    assert committed.endswith(output.getvalue())
    assert "Largest error: -6.0%." in output.getvalue()
