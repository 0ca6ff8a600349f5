"""The Kubeflow Pipelines backend the compiled package needs (liger_bench.kfp_backend), and where it is stated.

Every build of the package (each compile option that changes what it holds) is compiled and read
field by field: a field no feature of the table claims, or a feature newer than the stated minimum,
fails here, as does a stated minimum that README.md, docs/run-on-kubeflow.md or a component's
metadata.yaml do not repeat.
"""

import re
from pathlib import Path

import pytest
import yaml

from liger_bench.cli.main import compile_pipeline
from liger_bench.kfp_backend import FEATURES, MIN_BACKEND, package_fields, required_features, version_key
from liger_bench.versions import CUDA_BASE_IMAGE, CUDA_MIN_DRIVER

ROOT = Path(__file__).resolve().parent.parent
BUILDS = {
    "default": {},
    "hf-cache": {"hf_cache_pvc": "liger-bench-hf-cache"},
    "several-gpus": {"gpus_per_run": 4, "max_gpus_per_run": 4},
    "trainjob": {
        "nodes_per_run": 2,
        "gpus_per_run": 8,
        "max_gpus_per_run": 16,
        "trainer_runtime": "torch-distributed",
        "trainer_pvc": "liger-bench-trainjobs",
    },
    "cached-training": {"cache_training": True},
    "model-volume": {"model_volume": "liger-bench-inputs"},
    "hub-mirror": {"hf_endpoint": "http://hf-mirror.internal:8080"},
    "no-retries": {"train_retries": 0},
}
STATED = f"Kubeflow Pipelines {MIN_BACKEND} or newer"


def fields_of(path: Path) -> set[str]:
    spec, *platform = yaml.safe_load_all(path.read_text())
    return package_fields(spec, platform[0] if platform else None)


@pytest.fixture(scope="module")
def fields_by_build(tmp_path_factory) -> dict[str, set[str]]:
    folder = tmp_path_factory.mktemp("builds")
    return {name: fields_of(compile_pipeline(folder / f"{name}.yaml", options)) for name, options in BUILDS.items()}


@pytest.mark.parametrize("build", BUILDS)
def test_every_field_of_the_package_belongs_to_a_feature_no_newer_than_the_stated_minimum(fields_by_build, build):
    used, unclaimed = required_features(fields_by_build[build])
    assert unclaimed == [], (
        "the package uses fields no feature of liger_bench.kfp_backend.FEATURES claims; add the feature with "
        "the first Kubeflow Pipelines release that supports it (kubeflow/pipelines CHANGELOG.md)"
    )
    newest = used[0]
    assert version_key(newest.since) <= version_key(MIN_BACKEND), f"{newest.name} needs {newest.since}"


def test_the_minimum_is_the_newest_feature_used_and_every_feature_of_the_table_is_used(fields_by_build):
    used, _ = required_features(set().union(*fields_by_build.values()))
    assert used[0].since == MIN_BACKEND
    assert used[0].name.startswith("dsl.Collected")
    assert sorted(feature.name for feature in used) == sorted(feature.name for feature in FEATURES)


def test_a_feature_outside_the_table_is_caught(tmp_path):
    """A pipeline with an exit handler: fields the table does not know."""
    from kfp import dsl

    from liger_bench.package import compile_package

    @dsl.component(base_image="python:3.11-slim")
    def step(text: str) -> str:
        return text

    @dsl.pipeline(name="cleaning-up")
    def cleaning_up(text: str = "x"):
        with dsl.ExitHandler(step(text="cleanup")):
            step(text=text)

    _, unclaimed = required_features(fields_of(compile_package(cleaning_up, tmp_path / "cleaning-up.yaml")))
    assert any("triggerPolicy" in field for field in unclaimed), unclaimed


@pytest.mark.parametrize("folder", sorted((ROOT / "components").glob("*/metadata.yaml")), ids=lambda p: p.parent.name)
def test_each_component_states_the_minimum_in_its_catalog_metadata(folder):
    dependencies = yaml.safe_load(folder.read_text())["dependencies"]["kubeflow"]
    kubeflow = {dependency["name"]: dependency["version"] for dependency in dependencies}
    assert kubeflow["Pipelines"] == f">={MIN_BACKEND}"


def test_the_readme_and_the_cluster_guide_state_the_minimum_the_features_and_the_driver():
    readme, guide = (ROOT / "README.md").read_text(), (ROOT / "docs" / "run-on-kubeflow.md").read_text()
    section = guide.split("## Backend requirements", 1)[1].split("\n## ", 1)[0]
    cuda = re.search(r":(\d+\.\d+\.\d+)-", CUDA_BASE_IMAGE)[1]
    for text in (readme, section):
        assert STATED in text
        assert f"CUDA {cuda}" in text and f"driver {CUDA_MIN_DRIVER[cuda]}" in text
    for feature in FEATURES:
        assert f"| {feature.since} |" in section
        for reference in re.findall(r"#\d+", feature.source):
            assert reference in section, f"{feature.name}: {reference} not cited in the guide"
