"""Every row of docs/failure-matrix.md: bad input is refused before any GPU is requested; faults lose nothing.

Real parts throughout: the grid and download code, the prepare_grid component, kfp's local runner, real
training steps of the tiny model, a real MLflow server. Two stand-ins, because the real thing cannot
exist here: a Hugging Face hub (a fake hub on 127.0.0.1 that answers like the real one, headers
included, so huggingface_hub's own error mapping runs), and a CUDA out-of-memory on CPU (the
``torch.OutOfMemoryError`` CUDA raises, raised from inside a real forward pass).
"""

from __future__ import annotations

import errno
import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_server import free_port

from liger_bench.cli import run_local
from liger_bench.config import TrainConfig
from liger_bench.grid import GridError, GridSpec, expand_grid

# A small valid experiment; each grid case changes one thing in it.
VALID_AXES = {
    "use_liger": [True, False],
    "per_device_train_batch_size": [2],
    "max_seq_length": [64],
    "n_runs": 1,
    "max_steps": 5,
    "warmup_steps_to_skip": 3,
}
# prepare_grid's parameters besides the axes.
GRID_TASK_ARGS = {"base_config": {}, "max_grid_size": 256}
# A whole local pipeline, as small as it gets: one batch size, one repeat, five steps.
SMALL_PIPELINE = {"use_liger": [False], "per_device_train_batch_size": [2], "n_runs": 1, "max_steps": 5}


def _train_config(**changes) -> TrainConfig:
    values = {"run_key": "fm", "per_device_train_batch_size": 2, "max_seq_length": 64, "max_steps": 4}
    return TrainConfig(**{**values, **changes})


def _run_results(run_dir: Path) -> list[dict]:
    """The result records train_model wrote in one pipeline run, by run key."""
    paths = run_dir.glob("for-loop-*/train-model/result")
    return sorted((json.loads(path.read_text()) for path in paths), key=lambda result: result["run_key"])


# Grid: refused by prepare_grid (liger_bench.grid) before any training task exists.


@dataclass(frozen=True)
class GridCase:
    id: str
    changes: dict
    message: str  # regex: the parameter, the value and what is accepted


GRID_CASES = [
    GridCase("empty-axis", {"per_device_train_batch_size": []}, r"per_device_train_batch_size: the axis is empty"),
    GridCase("empty-use-liger", {"use_liger": []}, r"use_liger: the axis is empty \(\[\]\); give at least one"),
    GridCase(
        "non-integer-batch-size",
        {"per_device_train_batch_size": [2.5]},
        r"per_device_train_batch_size: 2.5 is not an integer; accepted: positive integers",
    ),
    GridCase(
        "text-batch-size",
        {"per_device_train_batch_size": ["big"]},
        r"per_device_train_batch_size: 'big' is not valid; accepted: positive integers",
    ),
    GridCase(
        "zero-batch-size",
        {"per_device_train_batch_size": [0]},
        r"per_device_train_batch_size: 0 is not positive; accepted: positive integers",
    ),
    GridCase("negative-seq-len", {"max_seq_length": [-64]}, r"max_seq_length: -64 is not positive; accepted: positive"),
    GridCase("non-integer-seq-len", {"max_seq_length": [64.5]}, r"max_seq_length: 64.5 is not an integer; accepted"),
    GridCase("not-a-boolean", {"use_liger": ["yes"]}, r"use_liger: 'yes' is not valid; accepted: true or false"),
    GridCase(
        "duplicate-values",
        {"per_device_train_batch_size": [2, 4, 2.0]},
        r"per_device_train_batch_size: duplicate values \[2\] in \[2, 4, 2.0\]; list each value once",
    ),
    GridCase(
        "unknown-training-argument",
        {"base_config": {"learning_rat": 1e-5}},
        r"base_config: unknown keys \['learning_rat'\]; accepted: \[.*'learning_rate'",
    ),
    GridCase(
        "base-config-sets-an-axis",
        {"base_config": {"max_seq_length": 128}},
        r"base_config: keys \['max_seq_length'\] are set by the grid itself",
    ),
    GridCase(
        "base-config-bad-value",
        {"base_config": {"learning_rate": "fast"}},
        r"base_config: learning_rate: expected float, got 'fast'",
    ),
    GridCase(
        "base-config-bad-precision",
        {"base_config": {"precision": "fp8"}},
        r"base_config: precision must be 'auto', 'bf16' or 'fp32', got 'fp8'",
    ),
    GridCase(
        "grid-too-large",
        {"per_device_train_batch_size": list(range(1, 130))},
        r"grid size 258 .* exceeds max_grid_size=256; accepted: shorten an axis or n_runs, or raise max_grid_size",
    ),
    GridCase(
        "grid-above-own-limit",
        {"n_runs": 3, "max_grid_size": 5},
        r"grid size 6 .* exceeds max_grid_size=5",
    ),
    GridCase("zero-runs", {"n_runs": 0}, r"n_runs: 0 is too small; accepted: integers >= 1"),
    GridCase("negative-runs", {"n_runs": -1}, r"n_runs: -1 is too small; accepted: integers >= 1"),
    GridCase(
        "max-steps-not-after-warmup",
        {"max_steps": 3},
        r"max_steps: 3 leaves no measured step after warmup_steps_to_skip=3; accepted: max_steps > 3",
    ),
]


def test_the_valid_grid_the_cases_start_from_is_accepted():
    assert len(expand_grid(GridSpec(**VALID_AXES))) == 2


@pytest.mark.parametrize("case", GRID_CASES, ids=[case.id for case in GRID_CASES])
def test_bad_grid_is_refused_with_a_message_naming_parameter_value_and_accepted(case):
    with pytest.raises(GridError, match=case.message):
        expand_grid(GridSpec(**{**VALID_AXES, **case.changes}))


def test_bad_grid_fails_the_pipeline_in_prepare_grid_before_any_training(kfp_local, capfd, embedded_assets):
    """On a cluster prepare_grid is the guard (``liger-bench local`` refuses the same grid before it starts)."""
    from liger_bench.pipelines.liger_benchmark import liger_benchmark

    from liger_bench.userinput import UserError

    model_dir, dataset_dir = embedded_assets
    overrides = {
        **SMALL_PIPELINE,
        "per_device_train_batch_size": [0],
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
    }
    message = "per_device_train_batch_size: 0 is not positive; accepted: positive integers"
    with pytest.raises(UserError, match=message):
        run_local(kfp_local / "refused", overrides)
    assert not (kfp_local / "refused").exists()
    with pytest.raises(RuntimeError, match="Inner task failed: .*prepare-grid"):
        liger_benchmark(**overrides)
    logs = "".join(capfd.readouterr())
    assert f"GridError: {message}" in logs
    (run_dir,) = [p for p in (kfp_local / "pipeline_root").iterdir() if p.name != ".kfp_cache"]
    assert sorted(task.name for task in run_dir.iterdir()) == ["download-dataset", "download-model"]


# Model: download_model (liger_bench.modelio) and prepare_grid's check against the model.


@pytest.fixture(scope="module")
def gpt2_model_dir(embedded_assets, tmp_path_factory) -> Path:
    """A model folder of an architecture liger-kernel has no patches for: GPT-2, random weights,
    the embedded tokenizer, a context of 128 positions (config key ``n_positions``)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2") / "model"
    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=128, vocab_size=len(tokenizer))
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class ModelGridCase:
    id: str
    model: str  # "phi3" (the embedded model) or "gpt2"
    changes: dict
    message: str | None  # regex of the GridError; None: the grid is accepted


MODEL_GRID_CASES = [
    ModelGridCase(
        "liger-on-unsupported-architecture",
        "gpt2",
        {"use_liger": [True, False]},
        r"use_liger: true was requested but liger-kernel has no patches for model type 'gpt2' .*"
        r"use use_liger=\[false\], or a model of one of the types \[.*'phi3'",
    ),
    ModelGridCase("unsupported-architecture-without-liger", "gpt2", {"use_liger": [False]}, None),
    ModelGridCase(
        "seq-len-above-context",
        "phi3",
        {"max_seq_length": [512, 4096]},
        r"max_seq_length: 4096 exceeds the context length 2048 of model .*; accepted: values <= 2048",
    ),
    ModelGridCase(
        "seq-len-above-gpt2-n-positions",
        "gpt2",
        {"use_liger": [False], "max_seq_length": [256]},
        r"max_seq_length: 256 exceeds the context length 128",
    ),
]


@pytest.mark.parametrize("case", MODEL_GRID_CASES, ids=[case.id for case in MODEL_GRID_CASES])
def test_grid_the_model_cannot_run_is_refused_by_prepare_grid(case, embedded_assets, gpt2_model_dir, tmp_path):
    """prepare_grid's own function on the metadata download_model's work produced."""
    from kfp.dsl import Model
    from liger_bench.components.prepare_grid import prepare_grid

    from liger_bench.modelio import prepare_model

    source = {"phi3": embedded_assets[0], "gpt2": gpt2_model_dir}[case.model]
    destination = tmp_path / "model"
    metadata = prepare_model(str(source), "", destination)
    model = Model(name="model", uri=str(destination), metadata=metadata)
    arguments = {**VALID_AXES, **GRID_TASK_ARGS, **case.changes}
    if case.message is None:
        grid = prepare_grid.python_func(model=model, **arguments)
        assert [item["use_liger"] for item in grid] == [False]
    else:
        with pytest.raises(GridError, match=case.message):
            prepare_grid.python_func(model=model, **arguments)


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's ``answer``: (HTTP status, headers), as the hub does."""

    def do_GET(self):
        status, headers = self.server.answer
        body = json.dumps({"error": headers.get("X-Error-Message", "")}).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[Callable[[tuple[int, dict] | None], str]]:
    """Point huggingface_hub at 127.0.0.1: ``fake_hub(answer)`` starts a hub answering ``answer``,
    ``fake_hub(None)`` leaves a port where nothing listens (the hub is unreachable). Returns the URL."""
    from huggingface_hub import constants

    servers = []

    def start(answer: tuple[int, dict] | None) -> str:
        if answer is None:
            url = f"http://127.0.0.1:{free_port()}"
        else:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
            server.answer = answer
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            servers.append(server)
            url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setattr(constants, "ENDPOINT", url)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


GATED = (401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this repo is restricted."})
NOT_FOUND = (404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
NO_REVISION = (404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id: v9"})
SECRET_HINT = "create the Kubernetes Secret named by the pipeline parameter hf_token_secret (key HF_TOKEN)"


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


def _save_to_disk(rows: list[dict]) -> Callable[[Path], None]:
    def save(folder: Path) -> None:
        import datasets

        data = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({"text": []})
        data.save_to_disk(str(folder / "saved"))

    return save


@dataclass(frozen=True)
class SourceCase:
    id: str
    kind: str  # "model": download_model's work; "dataset": download_dataset's work
    name: str  # model_name or dataset_name; "{tmp}" is a temp folder that ``prepare`` fills
    message: str  # regex of the ModelError / DatasetError
    hub: tuple[int, dict] | None = None  # the fake hub's answer; None: the hub is unreachable
    prepare: Callable[[Path], None] | None = None
    split: str = "train"
    revision: str = ""
    hf_token: str = ""


SOURCE_CASES = [
    SourceCase("model-path-missing", "model", "/nonexistent/model", r"model_name: local path '/nonexistent/model'"),
    SourceCase(
        "model-hub-unreachable",
        "model",
        "org/model",
        r"model_name: 'org/model' is not a local path and the hub at http://127.0.0.1:\d+ could not be reached"
        r".*ConnectError.*check the node's network access and HF_ENDPOINT",
    ),
    SourceCase(
        "model-not-on-hub",
        "model",
        "org/no-such-model",
        r"model_name: 'org/no-such-model' was not found on the hub at http://127.0.0.1:\d+ and is not a local",
        hub=NOT_FOUND,
    ),
    SourceCase(
        "model-gated-without-token",
        "model",
        "org/gated",
        r"model_name: 'org/gated' is gated and HF_TOKEN is not set; "
        + SECRET_HINT.replace("(", r"\(").replace(")", r"\)"),
        hub=GATED,
    ),
    SourceCase(
        "model-gated-token-without-access",
        "model",
        "org/gated",
        r"model_name: 'org/gated' is gated and the HF_TOKEN given has no access",
        hub=GATED,
        hf_token="hf_no_access",
    ),
    SourceCase(
        "model-revision-missing",
        "model",
        "org/model",
        r"model_revision: 'v9' does not exist for 'org/model'",
        hub=NO_REVISION,
        revision="v9",
    ),
    SourceCase(
        "model-folder-without-weights",
        "model",
        "{tmp}",
        r"model folder .* has no \*.safetensors weights",
        prepare=_write("config.json", "{}"),
    ),
    SourceCase("dataset-path-missing", "dataset", "/nonexistent/data.jsonl", r"local path .* does not exist"),
    SourceCase(
        "dataset-hub-unreachable",
        "dataset",
        "org/data",
        r"dataset_name: 'org/data' is not a local path and the hub at http://127.0.0.1:\d+ could not be reached",
    ),
    SourceCase(
        "dataset-not-on-hub",
        "dataset",
        "org/no-such-data",
        r"dataset_name: 'org/no-such-data' was not found on the hub",
        hub=NOT_FOUND,
    ),
    SourceCase(
        "dataset-gated-without-token",
        "dataset",
        "org/gated",
        r"dataset_name: 'org/gated' is gated and HF_TOKEN is not set",
        hub=GATED,
    ),
    SourceCase(
        "dataset-unusable-columns",
        "dataset",
        "{tmp}/qa.jsonl",
        r"dataset has columns \['answer', 'question'\]; accepted: prompt\+completion, alpaca's",
        prepare=_write("qa.jsonl", '{"question": "Why?", "answer": "Because."}\n'),
    ),
    SourceCase(
        "dataset-empty-file",
        "dataset",
        "{tmp}/empty.jsonl",
        r"dataset_split: 'train' of '.*/empty.jsonl' has no rows; need at least one row",
        prepare=_write("empty.jsonl", ""),
    ),
    SourceCase(
        "dataset-header-only",
        "dataset",
        "{tmp}/header.csv",
        r"dataset_split: 'train' of '.*/header.csv' has no rows; need at least one row",
        prepare=_write("header.csv", "instruction,output\n"),
    ),
    SourceCase(
        "dataset-saved-empty",
        "dataset",
        "{tmp}/saved",
        r"dataset_name: '.*/saved' holds no rows; need at least one row",
        prepare=_save_to_disk([]),
    ),
    SourceCase(
        "dataset-no-completion-text",
        "dataset",
        "{tmp}/saved",
        r"no row has a non-empty completion/output/text",
        prepare=_save_to_disk([{"instruction": "Say nothing.", "output": " "}]),
    ),
    SourceCase(
        "dataset-unknown-split",
        "dataset",
        "{tmp}/data.jsonl",
        r"dataset_split: 'test' does not exist",
        prepare=_write("data.jsonl", '{"text": "one row"}\n'),
        split="test",
    ),
    SourceCase(
        "dataset-unsupported-file",
        "dataset",
        "{tmp}/data.txt",
        r"has suffix '.txt'; accepted: \['.csv', '.json', '.jsonl', '.parquet'\]",
        prepare=_write("data.txt", "one row"),
    ),
]


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[case.id for case in SOURCE_CASES])
def test_unusable_model_or_dataset_is_refused_by_its_download_task(case, fake_hub, monkeypatch, tmp_path):
    from liger_bench.data import DatasetError, prepare_dataset
    from liger_bench.modelio import ModelError, prepare_model

    fake_hub(case.hub)
    if case.hf_token:
        monkeypatch.setenv("HF_TOKEN", case.hf_token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    source = tmp_path / "source"
    source.mkdir()
    if case.prepare:
        case.prepare(source)
    name = case.name.replace("{tmp}", str(source))
    destination = tmp_path / "out"
    if case.kind == "model":
        with pytest.raises(ModelError, match=case.message):
            prepare_model(name, case.revision, destination)
    else:
        with pytest.raises(DatasetError, match=case.message):
            prepare_dataset(name, case.split, case.revision, destination)


def test_rows_longer_than_max_seq_length_are_truncated_or_dropped_and_counted(embedded_assets):
    """A short row is kept whole, a long completion is cut, a prompt that fills the window is dropped."""
    import datasets
    from transformers import AutoTokenizer

    from liger_bench.data import tokenize

    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    rows = [
        {"prompt": "Say hi. ", "completion": "hi"},
        {"prompt": "Count. ", "completion": " ".join(["one two three"] * 40)},
        {"prompt": " ".join(["a very long prompt"] * 40), "completion": "cut away"},
    ]
    tokenized = tokenize(datasets.Dataset.from_list(rows), tokenizer, max_seq_length=32)
    assert tokenized.summary() == {
        "n_rows": 2,
        "n_source_rows": 3,
        "n_truncated": 2,
        "n_dropped_no_completion_tokens": 1,
    }
    assert all(len(row["input_ids"]) <= 32 for row in tokenized.rows)
    assert len(tokenized.rows[1]["input_ids"]) == 32


# Runtime: a run's outcome is data (ok, oom, failed, skipped); the others go on.


def test_out_of_memory_in_a_training_step_is_recorded_and_memory_released(
    embedded_assets, prepared_dataset, monkeypatch
):
    """The OOM is CUDA's exception class raised from inside a real forward at step 2 (no CUDA here)."""
    import gc
    import weakref

    import torch
    from transformers.models.phi3 import modeling_phi3

    from liger_bench.training import run_training

    original_forward = modeling_phi3.Phi3MLP.forward
    calls, failed_modules = [], []

    def forward(self, hidden_states):
        calls.append(1)
        if len(calls) > 2:  # two decoder layers: the third MLP call is step 2's first
            failed_modules.append(weakref.ref(self))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised on CPU)")
        return original_forward(self, hidden_states)

    monkeypatch.setattr(modeling_phi3.Phi3MLP, "forward", forward)
    result, steps = run_training(_train_config(), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "oom"
    assert result.reason == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (raised on CPU)"
    assert result.metrics["steps_completed"] == 1
    assert [s["step"] for s in steps] == [1]  # the step completed before the OOM stays in the history
    gc.collect()
    assert failed_modules[0]() is None, "the model outlived its run: memory was not released"


def test_a_crash_in_a_run_is_recorded_as_failed_with_type_and_message(embedded_assets, prepared_dataset):
    from liger_bench.training import run_training

    config = _train_config(lr_scheduler_type="not-a-scheduler")
    result, steps = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "failed" and steps == []
    assert result.reason.startswith("ValueError: ") and "not-a-scheduler" in result.reason
    assert "Traceback" in result.metrics["traceback"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a node without CUDA")
def test_liger_on_a_node_without_cuda_is_skipped_with_the_reason(embedded_assets, prepared_dataset):
    from liger_bench.training import NO_CUDA_REASON, run_training

    result, steps = run_training(_train_config(use_liger=True), str(embedded_assets[0]), str(prepared_dataset))
    assert (result.status, result.reason, steps) == ("skipped", NO_CUDA_REASON, [])


@pytest.fixture(scope="module")
def faulty_pipeline_run(embedded_assets, tmp_path_factory) -> dict:
    """One local pipeline run where MLflow is down and one of two runs fails (nothing of the
    sequence-4 run's rows keeps a completion token: the data is the problem, not the code)."""
    model_dir, dataset_dir = embedded_assets
    output_dir = tmp_path_factory.mktemp("faulty-run")
    overrides = {
        **SMALL_PIPELINE,
        "max_seq_length": [4, 64],
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
    }
    started = time.monotonic()
    report = run_local(output_dir, overrides)
    return {"output_dir": output_dir, "overrides": overrides, "report": report, "s": time.monotonic() - started}


def test_a_failed_run_does_not_stop_the_others_or_the_report(faulty_pipeline_run):
    run_dir = faulty_pipeline_run["report"].parent.parent
    failed, ok = _run_results(run_dir)
    assert (failed["run_key"], failed["status"]) == ("vanilla-bs2-seq4-r0", "failed")
    assert failed["reason"] == (
        "DatasetError: no row keeps a completion token at max_seq_length=4; raise max_seq_length"
    )
    assert (ok["run_key"], ok["status"]) == ("vanilla-bs2-seq64-r0", "ok")
    assert ok["data"]["n_truncated"] > 0 and ok["data"]["n_dropped_no_completion_tokens"] > 0
    outputs = json.loads((run_dir / "analyze-results" / "executor_output.json").read_text())["artifacts"]
    metrics = outputs["metrics"]["artifacts"][0]["metadata"]
    assert (metrics["n_failed"], metrics["n_ok"], metrics["success_ratio"]) == (1, 1, 0.5)


def test_mlflow_down_costs_a_bounded_wait_and_loses_nothing(faulty_pipeline_run):
    from liger_bench.tracking import OUTAGE_BUDGET_S

    run_dir = faulty_pipeline_run["report"].parent.parent
    uri = faulty_pipeline_run["overrides"]["mlflow_tracking_uri"]
    results = _run_results(run_dir)
    assert [result["mlflow"]["available"] for result in results] == [False, False]
    assert all(f"MLflow at {uri}" in result["mlflow"]["message"] for result in results)
    # Four tracking calls (parent, two children, analysis) may each wait at most OUTAGE_BUDGET_S.
    assert faulty_pipeline_run["s"] < 4 * OUTAGE_BUDGET_S
    histories = [json.loads(path.read_text()) for path in run_dir.glob("for-loop-*/train-model/history")]
    assert sorted(len(history["steps"]) for history in histories) == [0, 5]
    report = faulty_pipeline_run["report"].read_text()
    assert "vanilla-bs2-seq64-r0" in report and "vanilla-bs2-seq4-r0" in report


def test_the_same_pipeline_run_again_reuses_downloads_and_gives_the_same_structure(faulty_pipeline_run):
    first_run_dir = faulty_pipeline_run["report"].parent.parent
    report = run_local(faulty_pipeline_run["output_dir"], faulty_pipeline_run["overrides"])
    second_run_dir = report.parent.parent
    assert second_run_dir != first_run_dir
    assert not (second_run_dir / "download-model").exists() and not (second_run_dir / "download-dataset").exists()
    assert not (second_run_dir / "prepare-grid").exists()  # the grid is a pure function of its inputs: cached
    assert (second_run_dir / "start-tracking").exists()  # never cached: a new MLflow parent run each time

    def shape(results: list[dict]) -> list:
        return [(r["run_key"], r["status"], sorted(r), sorted(r["metrics"]), sorted(r["data"])) for r in results]

    assert shape(_run_results(second_run_dir)) == shape(_run_results(first_run_dir))


def test_disk_full_while_writing_the_history_leaves_no_partial_file(tmp_path):
    """A real EFBIG: the writer runs in a process whose file-size limit (RLIMIT_FSIZE) is 4 KiB."""
    code = textwrap.dedent(
        f"""
        import json, resource, signal
        from liger_bench.records import write_json_atomic

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_json_atomic({str(tmp_path / "history.json")!r}, {{"steps": [{{"step": i}} for i in range(2000)]}})
        except OSError as err:
            print(json.dumps({{"errno": err.errno, "error": str(err)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    error = json.loads(out.stdout)
    assert error["errno"] == errno.EFBIG
    assert "history.json" in error["error"] and "nothing was written" in error["error"]
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


# Secrets: never in logs, the compiled YAML, MLflow or the report.

CANARIES = {
    "HF_TOKEN": "hf_canary_5c1b0f2e9d",
    "MLFLOW_TRACKING_TOKEN": "mlflow_token_canary_84a7d3",
    "MLFLOW_TRACKING_PASSWORD": "mlflow_password_canary_e61f09",
}


def test_credentials_never_appear_in_logs_yaml_outputs_or_mlflow(
    tmp_path, capfd, monkeypatch, mlflow_server, embedded_assets
):
    from mlflow import MlflowClient

    from liger_bench.cli import compile_pipeline

    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bench-user")
    model_dir, dataset_dir = embedded_assets
    experiment = "secrets-canary"
    overrides = {
        **SMALL_PIPELINE,
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "mlflow_tracking_uri": mlflow_server,
        "mlflow_experiment": experiment,
    }
    report = run_local(tmp_path / "out", overrides)
    package = compile_pipeline(tmp_path / "pipeline.yaml", {})
    logs = "".join(capfd.readouterr())

    places = {"captured logs": logs.encode(), "compiled YAML": package.read_bytes()}
    places.update({str(path): path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()})
    assert str(report) in places

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 2  # the parent and one child: tracking really happened
    downloads = tmp_path / "mlflow-artifacts"
    for run in runs:
        places[f"run {run.info.run_name} params"] = json.dumps(run.data.params).encode()
        places[f"run {run.info.run_name} tags"] = json.dumps(run.data.tags).encode()
        folder = Path(client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id)))
        artifacts = [path for path in folder.rglob("*") if path.is_file()]
        assert artifacts
        places.update({f"artifact {path}": path.read_bytes() for path in artifacts})

    leaks = [
        (place, name)
        for place, content in places.items()
        for name, value in CANARIES.items()
        if value.encode() in content
    ]
    assert leaks == []


# Determinism: the same config and seed give the same losses.


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CPU determinism (CUDA kernels may not be)")
def test_same_config_and_seed_give_identical_losses_step_by_step(embedded_assets, prepared_dataset):
    from liger_bench.training import run_training

    losses = []
    for _ in range(2):
        result, steps = run_training(_train_config(), str(embedded_assets[0]), str(prepared_dataset))
        assert result.status == "ok", result.reason
        losses.append([step["loss"] for step in steps])
    assert len(losses[0]) == 4 and losses[0] == losses[1]


# The table in docs/failure-matrix.md names these tests and cases; keep the two in step.


def test_every_test_and_case_named_in_the_failure_matrix_exists():
    import re

    text = (Path(__file__).parents[1] / "docs" / "failure-matrix.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)\b(?!\.py)", text))  # not the other files it cites
    defined = {name for name in globals() if name.startswith("test_")}
    assert named and named <= defined, sorted(named - defined)
    case_ids = [case.id for cases in (GRID_CASES, MODEL_GRID_CASES, SOURCE_CASES) for case in cases]
    assert [case_id for case_id in case_ids if not re.search(rf"[`\[]{re.escape(case_id)}[`\]]", text)] == []
