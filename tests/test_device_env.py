"""benchmarks/device_env.sh: the carried wheels and the project are installed once per machine, never under a job.

A follow-up device call sources device_env.sh while a job detached by an earlier call still imports
from the installed packages: reinstalling there (pip --upgrade --target deletes each package before
moving the new one in) killed a training process on the H200. Here, on a tree of its own: a tiny
wheel in .whl and a tiny project, sourced as the device does (no GPU, so its nvidia-smi line fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pip installs, ~10 s a test

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tinyproject"
version = "0.1"

[tool.setuptools]
package-dir = { "tinyproject" = "src/tinyproject" }
packages = ["tinyproject"]
"""


def write_wheel(folder: Path) -> None:
    """A pure-Python wheel holding the module ``carried``, as pip builds them."""
    dist = "carried-0.1.dist-info"
    files = {
        "carried/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: carried\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / "carried-0.1-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    for script in ("device_env.sh", "device_jobs.sh"):
        (tmp_path / "benchmarks" / script).write_text((BENCHMARKS / script).read_text())
    (tmp_path / ".whl").mkdir()
    write_wheel(tmp_path / ".whl")
    (tmp_path / "pyproject.toml").write_text(PROJECT)
    (tmp_path / "src" / "tinyproject").mkdir(parents=True)
    (tmp_path / "src" / "tinyproject" / "__init__.py").write_text("NAME = 'tiny'\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "sites").mkdir()
    return tmp_path


def source(tree: Path) -> Path:
    """Source device_env.sh in ``tree`` as a device call does; the directory its PYTHONPATH names."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OUT": str(tree / "out"),
        "LIGER_BENCH_SITE_ROOT": str(tree / "sites"),
        "PYTHONDONTWRITEBYTECODE": "1",  # as on the H200: its Python writes no .pyc
    }
    call = subprocess.run(
        ["bash", "-c", 'source benchmarks/device_env.sh >/dev/null 2>&1 || exit 9; echo "$PYTHONPATH"'],
        cwd=tree, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert call.returncode == 0, call.stderr
    return Path(call.stdout.strip())


def test_a_second_call_reuses_the_installed_packages_untouched(tree):
    site = source(tree)
    assert site.parent == tree / "sites" and site.name.startswith("site-")
    assert (site / "carried" / "__init__.py").exists()
    assert (site / "tinyproject" / "__init__.py").exists()
    before = {path: path.stat().st_ino for path in site.rglob("*")}
    assert source(tree) == site
    assert {path: path.stat().st_ino for path in site.rglob("*")} == before


def test_changed_sources_install_beside_the_old_packages_which_a_running_job_keeps(tree):
    site = source(tree)
    (tree / "src" / "tinyproject" / "__init__.py").write_text("NAME = 'changed'\n")
    changed = source(tree)
    assert changed != site
    assert "changed" in (changed / "tinyproject" / "__init__.py").read_text()
    assert "tiny" in (site / "tinyproject" / "__init__.py").read_text()


def test_the_carried_modules_are_compiled_at_install_where_python_writes_no_pyc(tree):
    site = source(tree)
    assert list((site / "carried" / "__pycache__").glob("__init__.*.pyc"))
