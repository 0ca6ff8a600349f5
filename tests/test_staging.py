"""Inputs staged once on a shared volume (``liger_bench.inputs.staging``), on the real download tasks' work."""

import json
from pathlib import Path

import pytest

from liger_bench.inputs.staging import POINTER_KEY, StagingError, input_folder
from liger_bench.tasks import download_dataset, download_model
from liger_bench.versions import package_version

# A pointer artifact is a short JSON document; the staged model and dataset are the real files.
POINTER_MAX_BYTES = 400


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_without_a_staging_folder_the_artifact_holds_the_files(embedded_assets, tmp_path):
    info = download_model(str(embedded_assets[0]), "", tmp_path / "model")
    assert (tmp_path / "model" / "config.json").is_file() and "staged_folder" not in info
    assert input_folder(tmp_path / "model", "model") == str(tmp_path / "model")


def test_staged_inputs_are_written_once_under_their_content_and_the_artifact_is_a_pointer(embedded_assets, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    first = download_model(str(embedded_assets[0]), "", tmp_path / "model-1", staging_dir=str(volume))
    again = download_model(str(embedded_assets[0]), "", tmp_path / "model-2", staging_dir=str(volume))
    data = download_dataset(str(embedded_assets[1]), "train", "", tmp_path / "dataset", staging_dir=str(volume))

    staged = Path(first["staged_folder"])
    assert staged.parent == volume / "models" and staged.name.endswith("@" + first["revision"].replace(":", "_"))
    assert again["staged_folder"] == str(staged)  # same content: the earlier copy is used, the new one dropped
    assert [p.name for p in (volume / "models").iterdir()] == [staged.name]  # no half-written copy left behind
    assert any(staged.glob("*.safetensors")) and (staged / "tokenizer.json").is_file()
    assert oct(staged.stat().st_mode & 0o777) == "0o755"  # readable by pods of another user
    for artifact, folder in ((tmp_path / "model-1", staged), (tmp_path / "dataset", Path(data["staged_folder"]))):
        assert artifact.is_file() and _size(artifact) < POINTER_MAX_BYTES < _size(folder)
        assert json.loads(artifact.read_text()) == {POINTER_KEY: str(folder)}
        assert input_folder(artifact, "model") == str(folder)
    # The rows are this project's conversion of one split: both are part of the content's name.
    assert Path(data["staged_folder"]).name.endswith(
        f"@train@liger-bench-{package_version()}@{data['revision']}".replace(":", "_")
    )


def test_a_staging_folder_that_is_not_there_fails_the_download_with_what_to_check(embedded_assets, tmp_path):
    with pytest.raises(StagingError, match=r"staging folder '.*/absent' is not a writable folder in this pod; check"):
        download_model(str(embedded_assets[0]), "", tmp_path / "model", staging_dir=str(tmp_path / "absent"))
    assert not (tmp_path / "model").exists()


def test_a_pointer_to_a_staged_folder_that_is_gone_names_it_and_what_to_do(embedded_assets, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    info = download_model(str(embedded_assets[0]), "", tmp_path / "model", staging_dir=str(volume))
    Path(info["staged_folder"], "config.json").unlink()
    Path(info["staged_folder"]).rename(tmp_path / "moved")
    with pytest.raises(StagingError, match=r"model: the staged folder '.*' is not in this pod: mount the volume"):
        input_folder(tmp_path / "model", "model")
