"""Each component folder in the Kubeflow pipelines-components catalog's layout, its README true to the code.

The README's overview, inputs and outputs are generated from the component by scripts/component_readmes.py;
its usage examples are compiled here and the tests it names must exist.
"""

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = sorted(path.parent for path in (ROOT / "components").glob("*/component.py"))
EXAMPLE = re.compile(r"```python\n(?P<code>.*?)```", re.S)
TEST_LINE = re.compile(r"^- `(?P<file>tests/[\w/]+\.py)`(?:: (?P<names>.*))?", re.M)


def test_every_component_of_the_pipeline_has_a_catalog_folder():
    assert [folder.name for folder in FOLDERS] == sorted(
        [
            "download_dataset",
            "download_model",
            "prepare_grid",
            "start_tracking",
            "find_frontier",
            "train_model",
            "analyze_results",
        ]
    )
    for folder in FOLDERS:
        assert {"__init__.py", "component.py", "metadata.yaml", "README.md"} <= {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_metadata_follows_the_catalog_schema(folder):
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert metadata["name"] == folder.name
    assert metadata["tier"] in ("core", "third_party")
    assert metadata["stability"] in ("alpha", "beta", "stable")
    kubeflow = {dep["name"]: dep["version"] for dep in metadata["dependencies"]["kubeflow"]}
    assert re.fullmatch(r">=\d+\.\d+", kubeflow["Pipelines"])
    assert all(service["name"] for service in metadata["dependencies"]["external_services"])
    assert all(isinstance(tag, str) and tag for tag in metadata["tags"])
    assert isinstance(metadata["lastVerified"], datetime)
    assert isinstance(metadata["ci"]["skip_dependency_probe"], bool)


def test_readmes_are_generated_from_the_current_components():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "component_readmes.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_readme_examples_compile(folder, tmp_path, monkeypatch):
    examples = EXAMPLE.findall((folder / "README.md").read_text())
    assert examples
    monkeypatch.chdir(tmp_path)
    for code in examples:
        exec(compile(code, f"{folder.name}/README.md", "exec"), {})
    assert len(list(tmp_path.glob("*.yaml"))) == len(examples)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_readme_names_tests_that_exist(folder):
    named = TEST_LINE.findall((folder / "README.md").read_text())
    assert named
    for file, names in named:
        source = (ROOT / file).read_text()
        for name in re.findall(r"`(test_\w+)`", names):
            assert f"def {name}(" in source, f"{file} has no {name}"
