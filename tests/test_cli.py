"""The ``liger-bench`` command as a user meets it: through the real console script, in a subprocess."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from liger_bench.cli.main import make_parser
from liger_bench.cli.progress import ProgressLog
from liger_bench.cli.userinput import UserError, check_local_paths, parse_params
from liger_bench.cluster import ClusterOptions
from liger_bench.plan.signature import SignatureError, pipeline_parameters

CLI = [sys.executable, "-m", "liger_bench.cli.main"]
USER_ERROR_SECONDS = 10.0


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mistake:
    name: str
    args: list[str]
    says: list[str]


MISTAKES = [
    Mistake(
        "unknown-param",
        ["local", "--param", "batch_size=[2]"],
        ["batch_size: no such pipeline parameter", "did you mean per_device_train_batch_size?", "valid: base_config"],
    ),
    Mistake(
        "malformed-json",
        ["local", "--param", "per_device_train_batch_size=[2, 4"],
        ["is not valid JSON", "strings need JSON quotes", "model_name='\"org/model\"'"],
    ),
    Mistake("unquoted-string", ["local", "--param", "model_name=org/model"], ["strings need JSON quotes"]),
    Mistake("wrong-type", ["local", "--param", 'n_runs="3"'], ["n_runs: expected an integer"]),
    Mistake(
        "bad-grid-value",
        ["local", "--param", "per_device_train_batch_size=[0, 4]"],
        ["per_device_train_batch_size: 0 is not positive; accepted: positive integers"],
    ),
    Mistake(
        "missing-local-dataset",
        ["local", "--param", 'dataset_name="/nonexistent/dir"'],
        ["dataset_name: local path '/nonexistent/dir' does not exist"],
    ),
    Mistake(
        "missing-local-model",
        ["local", "--param", 'model_name="./no-such-model"'],
        ["model_name: local path './no-such-model' does not exist"],
    ),
    Mistake(
        "missing-params-file",
        ["run", "--host", "http://127.0.0.1:1", "--params", "missing.yaml"],
        ["missing.yaml: no such file"],
    ),
    Mistake(
        "bad-grid-in-params-file",
        ["run", "--host", "http://127.0.0.1:{port}", "--params", "bad-grid.yaml"],
        ["max_steps: 3 leaves no measured step after warmup_steps_to_skip=3"],
    ),
    Mistake(
        "unreachable-host-run",
        ["run", "--host", "http://127.0.0.1:{port}", "--params", "inputs.yaml"],
        ["cannot reach the Kubeflow Pipelines API at http://127.0.0.1:", "Connection refused", "check --host"],
    ),
    Mistake(
        "unreachable-host-upload",
        ["upload", "--host", "http://127.0.0.1:{port}"],
        ["cannot reach the Kubeflow Pipelines API", "check --host"],
    ),
    Mistake(
        "unknown-name-in-params-file",
        ["run", "--host", "http://127.0.0.1:{port}", "--params", "typo.yaml"],
        ["typo.yaml: n_run: no such pipeline parameter (did you mean n_runs?)"],
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_user_mistakes_end_in_one_message_fast_and_nonzero(mistake, tmp_path):
    (tmp_path / "inputs.yaml").write_text("n_runs: 2\n")
    (tmp_path / "typo.yaml").write_text("n_run: 2\n")
    (tmp_path / "bad-grid.yaml").write_text("max_steps: 3\nwarmup_steps_to_skip: 3\n")
    args = [arg.format(port=free_port()) for arg in mistake.args]
    if args[0] == "local":
        args += ["--output-dir", str(tmp_path / "out")]
    started = time.monotonic()
    done = subprocess.run(CLI + args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert elapsed <= USER_ERROR_SECONDS
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"liger-bench {args[0]}: error: "), done.stderr
    for words in mistake.says:
        assert words in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_parse_params_reads_json_of_the_declared_types():
    declared = {"model_name": "String", "n_runs": "Integer", "use_liger": "List", "min_success_ratio": "Float"}
    params = parse_params(['model_name="org/model"', "n_runs=2", "use_liger=[false]", "min_success_ratio=1"], declared)
    assert params == {"model_name": "org/model", "n_runs": 2, "use_liger": [False], "min_success_ratio": 1}
    with pytest.raises(UserError, match="n_runs: expected an integer, got true"):
        parse_params(["n_runs=true"], declared)
    with pytest.raises(UserError, match="expects NAME=VALUE"):
        parse_params(["n_runs"], declared)


def test_hub_ids_and_existing_paths_pass_the_local_path_check(tmp_path):
    check_local_paths({"model_name": "microsoft/Phi-3-mini-4k-instruct", "dataset_name": str(tmp_path)})
    with pytest.raises(UserError, match="dataset_name: local path"):
        check_local_paths({"dataset_name": str(tmp_path / "missing")})


def test_progress_log_keeps_everything_in_the_log_and_one_line_per_run_on_the_terminal():
    log, terminal = io.StringIO(), io.StringIO()
    now = [0.0]
    progress = ProgressLog(log, terminal, total_runs=2, clock=lambda: now[0])
    now[0] = 5.0
    progress.write("kfp noise\n    [liger-bench] grid of 2 runs: vanilla-bs2-seq128-r0, liger-bs2-seq128-r0\n")
    now[0] = 35.0
    progress.write("\x1b[96m    [liger-bench] vanilla-bs2-seq128-r0: ok, 1,234 tokens/s\x1b[0m\n")
    progress.write("    [liger-bench] liger-bs2-seq128-r0: skipped")
    progress.write(" (Liger kernels are Triton GPU kernels and this node has no CUDA device; the run was skipped)\n")
    progress.write("liger_bench.plan.grid.GridError: max_seq_length: 9000 exceeds the context length\n")
    assert terminal.getvalue().splitlines() == [
        "[liger-bench] [1/2] vanilla-bs2-seq128-r0: ok, 1,234 tokens/s  ETA 30 s",
        "[liger-bench] [2/2] liger-bs2-seq128-r0: skipped (Liger kernels are Triton GPU kernels and this node has "
        "no CUDA device)",
    ]
    assert "kfp noise" in log.getvalue() and "GridError" in log.getvalue()
    assert progress.counts() == "1 ok, 1 skipped"
    assert progress.last_error == "GridError: max_seq_length: 9000 exceeds the context length"


def test_help_shows_defaults_parameter_names_and_the_quoting_rule():
    def help_of(*args: str) -> str:
        return subprocess.run(CLI + [*args, "--help"], capture_output=True, text=True, check=True).stdout

    compile_help, local_help, top_help = help_of("compile"), help_of("local"), help_of()
    flat = " ".join(compile_help.split())
    unspaced = "".join(compile_help.split())  # argparse also breaks lines after hyphens
    for option in fields(ClusterOptions):
        flag = "--" + option.name.replace("_", "-")
        shown = f"{option.metadata['help']} (default: {option.default})"
        assert f"{flag} " in flat and "".join(shown.split()) in unspaced, option.name
    assert "(default: liger_benchmark.yaml)" in flat
    flat_local = " ".join(local_help.split())
    for parameter in pipeline_parameters().values():
        assert f"{parameter.name} ({json.dumps(parameter.default)}" in flat_local
        assert parameter.help in flat_local
    assert "max_steps (100; local: 10)" in flat_local and "learning_rate (6e-06) Peak learning rate." in flat_local
    assert "strings need JSON quotes" in local_help and "(default: None)" not in local_help
    assert "``" not in top_help


def test_the_signature_reader_agrees_with_kfps_reading_of_the_pipeline():
    from liger_bench.pipelines.liger_benchmark import liger_benchmark

    compiled = liger_benchmark.component_spec.inputs
    read = pipeline_parameters()
    assert list(read) == list(compiled)
    for name, spec in compiled.items():
        assert (read[name].kfp_type, read[name].default) == (spec.type, spec.default), name
        assert read[name].help == " ".join(spec.description.split()), name


@pytest.mark.parametrize(
    ("signature", "says"),
    [
        ("n_runs: int = 3, max_steps: int = 100, seed: int = 0", "parameter seed has no line in the docstring's Args"),
        ("n_runs: int, max_steps: int = 100", "parameter n_runs has no default"),
        ("n_runs: int = 3, max_steps: tuple = (1,)", "parameter max_steps: annotation must be one of"),
        ("n_runs: int = 3, max_steps: int = len([])", "parameter max_steps: the default must be a literal"),
    ],
    ids=["no-args-line", "no-default", "untyped", "computed-default"],
)
def test_the_signature_reader_refuses_a_parameter_that_breaks_the_house_rules(tmp_path, signature, says):
    source = tmp_path / "pipeline.py"
    source.write_text(
        f"@dsl.pipeline(name='p')\ndef p({signature}):\n"
        '    """P.\n\n    Args:\n        n_runs: Repeats.\n        max_steps: Steps.\n    """\n'
    )
    with pytest.raises(SignatureError, match=says):
        pipeline_parameters(source)


def test_compile_options_are_the_cluster_options_given():
    from liger_bench.cli.main import compile_options

    assert compile_options(make_parser().parse_args(["compile"])) == {}
    given = make_parser().parse_args(["compile", "--max-concurrency", "2", "--cache-training", "--shm-size", "8Gi"])
    assert compile_options(given) == {"max_concurrency": 2, "cache_training": True, "shm_size": "8Gi"}
    # A boolean option can only turn its field on: every boolean field must default to off.
    assert all(option.default is False for option in fields(ClusterOptions) if isinstance(option.default, bool))


def test_compile_without_a_registry_warns_with_the_image_names(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "LIGER_BENCH_REGISTRY"}
    done = subprocess.run(
        CLI + ["compile", "--output", str(tmp_path / "p.yaml")], capture_output=True, text=True, env=env, check=True
    )
    assert "LIGER_BENCH_REGISTRY is not set" in done.stderr and "liger-bench-cuda:" in done.stderr
    env["LIGER_BENCH_REGISTRY"] = "registry.example.com/ml"
    quiet = subprocess.run(
        CLI + ["compile", "--output", str(tmp_path / "q.yaml")], capture_output=True, text=True, env=env, check=True
    )
    assert quiet.stderr == "" and "registry.example.com/ml/liger-bench-cpu:" in (tmp_path / "q.yaml").read_text()


@pytest.mark.slow
def test_default_local_run_fits_one_screen_and_ends_with_a_report_that_opens(cli_local_run):
    done, output_dir = cli_local_run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 80
    assert all(line.startswith("[liger-bench] ") for line in lines)
    assert done.stderr == ""
    assert lines[0].startswith("[liger-bench] 18 training runs") and "one at a time" in lines[0]
    finished = [line for line in lines if "/18] " in line]
    assert len(finished) == 18 and all("ETA" in line for line in finished[:-1])
    report, log = Path(lines[-2].removeprefix("[liger-bench] report: ")), Path(lines[-1].split(": ", 1)[1])
    assert report == output_dir.resolve() / "report.html" and report.read_text().startswith("<!DOCTYPE html>")
    assert "not a Liger measurement" in done.stdout
    assert "DockerRunner" in log.read_text() and "DockerRunner" not in done.stdout  # kfp's warnings: log only


@pytest.mark.slow
def test_a_failed_local_run_ends_in_one_line_naming_the_task_its_error_the_report_and_the_log(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU the Liger run trains, so the run does not fail")
    liger_only = ["--param", "use_liger=[true]", "--param", "per_device_train_batch_size=[2]", "--param", "n_runs=1"]
    args = ["local", "--output-dir", str(tmp_path / "out"), *liger_only]
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # on a CPU the one Liger run is skipped: nothing trained
    assert line.startswith("liger-bench local: error: task 'analyze-results' failed: ValueError: success ratio")
    report, log = (Path(part.split(": ", 1)[1]) for part in line.split("; ")[-2:])
    assert (
        report == (tmp_path / "out" / "report.html").resolve() and "No run trained successfully" in report.read_text()
    )
    assert "Traceback" in log.read_text() and "Traceback" not in done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        "[liger-bench] 1 training run (use_liger [true] × per_device_train_batch_size [2] × max_seq_length [128] × "
        "n_runs 1), one at a time"
    )
