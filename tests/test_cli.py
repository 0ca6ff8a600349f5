"""The ``liger-bench`` command as a user meets it: through the real console script, in a subprocess."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import textwrap
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
        [
            "batch_size: no such pipeline parameter",
            "did you mean frontier_max_batch_size or frontier_seq_batch_size or per_device_train_batch_size?",
            "valid: base_config",
        ],
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
        "bad-frontier-setting",
        ["local", "--param", "frontier_resolution=0"],
        ["frontier_resolution: 0 is out of range; accepted: integers from 1 to frontier_max_batch_size"],
    ),
    Mistake(
        "max-batch-without-the-search",
        ["local", "--param", 'per_device_train_batch_size=["max"]', "--param", "frontier_search=false"],
        ['per_device_train_batch_size: "max" is each variant\'s searched memory frontier, but no search runs'],
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
    Mistake(
        "output-dir-is-a-file", ["local", "--output-dir", "a-file"], ["--output-dir a-file: is a file, not a folder"]
    ),
    Mistake(
        "output-dir-under-a-file",
        ["local", "--output-dir", "a-file/out"],
        ["--output-dir a-file/out:", "a-file is a file, so no folder can be made inside it"],
    ),
    Mistake(
        "compile-output-is-a-folder",
        ["compile", "--output", "model"],
        ["--output model: is a folder; give a file name, e.g. model/liger_benchmark.yaml"],
    ),
    Mistake(
        "compile-output-under-a-file",
        ["compile", "--output", "a-file/p.yaml"],
        ["--output a-file/p.yaml:", "a-file is a file, so no folder can be made inside it"],
    ),
    Mistake(
        "zero-max-concurrency",
        ["local", "--param", "max_concurrency=0"],
        ["max_concurrency: 0 is not valid; accepted: integers >= 1"],
    ),
    Mistake(
        "empty-model-name",
        ["local", "--param", 'model_name=""'],
        ["model_name: '' is empty; give a Hugging Face id such as 'org/name' or a local path"],
    ),
    Mistake(
        "swapped-model-and-dataset",
        ["local", "--param", 'model_name="./data"', "--param", 'dataset_name="./model"'],
        [
            "model_name: './data' holds a dataset (data files, no config.json), not a model; are model_name and "
            "dataset_name swapped?"
        ],
    ),
    Mistake(
        "model-volume-is-a-file",
        ["local", "--model-volume", "a-file"],
        ["--model-volume a-file: is a file, not a folder"],
    ),
    Mistake(
        "model-volume-with-a-compiled-package",
        [
            "run",
            "--host",
            "http://127.0.0.1:{port}",
            "--params",
            "inputs.yaml",
            "--package",
            "inputs.yaml",
            "--model-volume",
            "liger-inputs",
        ],
        [
            "--model-volume applies when run compiles the package; --package inputs.yaml was compiled already: "
            "give --model-volume to 'liger-bench compile' instead"
        ],
    ),
    Mistake(
        "negative-train-retries",
        ["compile", "--train-retries", "-1"],
        ["train_retries: -1 is not valid; accepted: integers >= 0"],
    ),
    Mistake(
        "missing-package",
        ["upload", "--host", "http://127.0.0.1:{port}", "--package", "missing.yaml"],
        ["--package missing.yaml: no such file"],
    ),
]


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_user_mistakes_end_in_one_message_fast_and_nonzero(mistake, tmp_path):
    (tmp_path / "inputs.yaml").write_text("n_runs: 2\n")
    (tmp_path / "typo.yaml").write_text("n_run: 2\n")
    (tmp_path / "bad-grid.yaml").write_text("max_steps: 3\nwarmup_steps_to_skip: 3\n")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "phi3"}')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    args = [arg.format(port=free_port()) for arg in mistake.args]
    if args[0] == "local" and "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "out")]
    before = _tree(tmp_path)
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
    assert _tree(tmp_path) == before  # refused before anything was created


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
    progress.write("kfp noise\n    [liger-bench] grid of 2 runs: baseline-bs2-seq128-r0, liger-bs2-seq128-r0\n")
    now[0] = 35.0
    progress.write("\x1b[96m    [liger-bench] baseline-bs2-seq128-r0: ok, 1,234 tokens/s\x1b[0m\n")
    progress.write("    [liger-bench] liger-bs2-seq128-r0: skipped")
    progress.write(" (Liger kernels are Triton GPU kernels and this node has no CUDA device; the run was skipped)\n")
    progress.write("liger_bench.plan.grid.GridError: max_seq_length: 9000 exceeds the context length\n")
    assert terminal.getvalue().splitlines() == [
        "[liger-bench] [1/2] baseline-bs2-seq128-r0: ok, 1,234 tokens/s  ETA 30 s",
        "[liger-bench] [2/2] liger-bs2-seq128-r0: skipped (Liger kernels are Triton GPU kernels and this node has "
        "no CUDA device)",
    ]
    assert "kfp noise" in log.getvalue() and "GridError" in log.getvalue()
    assert progress.counts() == "1 ok, 1 skipped"
    assert progress.last_error == "GridError: max_seq_length: 9000 exceeds the context length"


def test_progress_takes_the_grids_own_count_and_says_what_the_kernel_ablation_added():
    """The header counts the grid before the model's type is known; prepare_grid's count adds the ablation's arms."""
    log, terminal = io.StringIO(), io.StringIO()
    progress = ProgressLog(log, terminal, total_runs=2, clock=lambda: 0.0)
    progress.write("[liger-bench] grid of 6 runs: liger-bs2-seq128-r0, baseline-bs2-seq128-r0, liger.rope-bs2-...\n")
    progress.write("[liger-bench] baseline-bs2-seq128-r0: ok, 1,000 tokens/s\n")
    assert terminal.getvalue().splitlines() == [
        "[liger-bench] 6 training runs: the kernel ablation's arms for the model's kernels add 4",
        "[liger-bench] [1/6] baseline-bs2-seq128-r0: ok, 1,000 tokens/s  ETA 0 s",
    ]
    same = ProgressLog(io.StringIO(), terminal := io.StringIO(), total_runs=2)
    same.write("[liger-bench] grid of 2 runs: liger-bs2-seq128-r0, baseline-bs2-seq128-r0\n")
    assert terminal.getvalue() == ""  # no ablation: nothing to say


def test_progress_counts_a_run_whose_task_was_re_run_once_with_its_last_status():
    log, terminal = io.StringIO(), io.StringIO()
    progress = ProgressLog(log, terminal, total_runs=2)
    progress.write("[liger-bench] baseline-bs2-seq128-r0: ok, 1,000 tokens/s\n")  # its task was lost after this
    progress.write("[liger-bench] baseline-bs2-seq128-r0: ok, 1,100 tokens/s\n")
    progress.write("[liger-bench] baseline-bs2-seq128-r1: ok, 1,200 tokens/s\n")
    assert terminal.getvalue().splitlines() == [
        "[liger-bench] [1/2] baseline-bs2-seq128-r0: ok, 1,000 tokens/s",
        "[liger-bench] [1/2] baseline-bs2-seq128-r0: ok, 1,100 tokens/s (again: its task was re-run)",
        "[liger-bench] [2/2] baseline-bs2-seq128-r1: ok, 1,200 tokens/s",
    ]
    assert progress.counts() == "2 ok"


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
    assert "max_steps (100; without CUDA: 10)" in flat_local
    assert "learning_rate (6e-06) Peak learning rate." in flat_local
    assert "strings need JSON quotes" in flat_local and "(default: None)" not in local_help
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
    """README's first command. Without CUDA the CPU demo's 12 runs (the compile arm trains, Liger is skipped);
    with CUDA the pipeline's defaults, 24 runs."""
    import torch

    cuda = torch.cuda.is_available()
    runs = 24 if cuda else 12
    done, output_dir = cli_local_run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 80
    assert all(line.startswith("[liger-bench] ") for line in lines)
    assert done.stderr == ""
    assert lines[0].startswith(f"[liger-bench] {runs} training runs") and "one at a time" in lines[0]
    assert lines[1] == "[liger-bench] " + (
        "a CUDA GPU is present: the pipeline's defaults hold"
        if cuda
        else "no CUDA GPU: the CPU demo's defaults (per_device_train_batch_size [8], max_seq_length [128], "
        "max_steps 10, frontier_search false) and the pipeline's for the rest"
    )
    finished = [line for line in lines if f"/{runs}] " in line]
    assert len(finished) == runs and all("ETA" in line for line in finished[:-1])
    report, log = Path(lines[-2].removeprefix("[liger-bench] report: ")), Path(lines[-1].split(": ", 1)[1])
    assert report == output_dir.resolve() / "report.html" and report.read_text().startswith("<!DOCTYPE html>")
    assert cuda or "not a Liger or GPU measurement" in done.stdout
    assert cuda or "unavailable (no NVIDIA GPU)" in report.read_text()  # energy: never a measured 0 on a CPU
    assert [line for line in finished if "] compile-bs" in line and ": ok, " in line]  # the compile arm trained
    assert "DockerRunner" in log.read_text() and "DockerRunner" not in done.stdout  # kfp's warnings: log only


@pytest.mark.slow
def test_a_failed_local_run_ends_in_one_line_naming_the_task_its_error_the_report_and_the_log(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU the Liger run trains, so the run does not fail")
    liger_only = ["--param", "use_liger=[true]", "--param", "torch_compile=[false]"]
    liger_only += ["--param", "per_device_train_batch_size=[2]", "--param", "n_runs=1"]
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
        "[liger-bench] 1 training run (use_liger [true] × torch_compile [false] × per_device_train_batch_size [2] × "
        "max_seq_length [128] × n_runs 1), one at a time"
    )


def _without_root_overrides() -> None:
    """In the child before exec: drop the capabilities that let root ignore permission bits (a no-op for others)."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2  # linux/prctl.h, linux/capability.h


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["local", "--output-dir", "{ro}/out"], "--output-dir {ro}/out: {ro} is not writable by this user"),
        (["compile", "--output", "{ro}/p.yaml"], "--output {ro}/p.yaml: {ro} is not writable by this user"),
    ],
    ids=["output-dir-unwritable", "compile-output-unwritable"],
)
def test_an_unwritable_output_path_is_refused_in_one_line_before_anything_starts(args, says, tmp_path):
    """A folder of mode 0555; run as root, the command runs without the capabilities that ignore modes."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    args = [arg.format(ro=readonly) for arg in args]
    done = subprocess.run(CLI + args, capture_output=True, text=True, timeout=60, preexec_fn=_without_root_overrides)
    assert list(readonly.iterdir()) == []
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"liger-bench {args[0]}: error: {says.format(ro=readonly)}")


def test_the_traceback_of_an_unexpected_error_goes_to_a_new_file_never_through_a_planted_link(tmp_path):
    """A real unexpected failure: kfp-kubernetes cannot be imported, as in a broken install."""
    import os

    victim = tmp_path / "victim"
    victim.write_text("precious")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "liger-bench-compile.log").symlink_to(victim)  # the fixed name of earlier versions
    broken = "import sys; sys.modules['kfp.kubernetes'] = None; from liger_bench.cli.main import main"
    code = f"{broken}; sys.exit(main(['compile', '--output', {str(tmp_path / 'p.yaml')!r}]))"
    env = {**os.environ, "TMPDIR": str(tmp)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env) for _ in range(2)]
    logs = []
    for done in runs:
        assert done.returncode == 1
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("liger-bench compile: error: ModuleNotFoundError:")
        logs.append(Path(line.rpartition("(traceback: ")[2].rstrip(")")))
    assert victim.read_text() == "precious"
    assert logs[0] != logs[1]  # a unique name per failure
    for log in logs:
        assert log.parent == tmp and not log.is_symlink() and log.stat().st_mode & 0o777 == 0o600
        assert "Traceback" in log.read_text() and "kfp.kubernetes" in log.read_text()


def test_a_second_process_is_refused_the_output_dir_a_live_one_holds_and_a_dead_ones_lock_does_not_block(tmp_path):
    """Real processes holding the lock: one alive, then killed with SIGKILL, which leaves its lock file behind."""
    import os
    import signal

    from liger_bench.cli.outputdir import LOCK_FILE, one_run_at_a_time

    holder_code = (
        "import sys, time; from pathlib import Path; from liger_bench.cli.outputdir import one_run_at_a_time\n"
        "with one_run_at_a_time(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=rf"another liger-bench local run \(pid {holder.pid}\) is using this"):
            with one_run_at_a_time(tmp_path):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_FILE).read_text() == f"{holder.pid}\n"  # stale: its process is gone
    with one_run_at_a_time(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_lock_file_is_never_written_through_a_planted_link(tmp_path):
    from liger_bench.cli.outputdir import LOCK_FILE, one_run_at_a_time

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_FILE).symlink_to(victim)
    with pytest.raises(UserError, match="--output-dir .*out: Too many levels of symbolic links"):
        with one_run_at_a_time(tmp_path / "out"):
            pass
    assert victim.read_text() == "precious"


@pytest.mark.slow
def test_two_local_runs_into_one_output_dir_the_second_is_refused_with_the_first_ones_pid(tmp_path):
    """Two real ``liger-bench local`` processes; the first is stopped with SIGTERM once the second was refused."""
    import os
    import signal

    from liger_bench.cli.outputdir import one_run_at_a_time

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("<html>the report of an earlier run</html>")
    long_run = ["--param", "use_liger=[false]", "--param", "per_device_train_batch_size=[2]", "--param", "n_runs=1"]
    long_run += ["--param", "max_steps=5000"]
    log = (tmp_path / "first.log").open("w")
    command = CLI + ["local", "--output-dir", str(out), *long_run]
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "INCOMPLETE").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "INCOMPLETE").exists(), (tmp_path / "first.log").read_text()
        # The first run moved the earlier report aside: nothing at report.html passes for its result.
        assert not (out / "report.html").exists()
        assert "earlier run" in (out / "previous-report.html").read_text()
        started = time.monotonic()
        second = subprocess.run(CLI + ["local", "--output-dir", str(out)], capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < USER_ERROR_SECONDS
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert line == (
            f"liger-bench local: error: --output-dir {out}: another liger-bench local run (pid {first.pid}) is using "
            "this folder; wait for it to end, stop it, or give another --output-dir"
        )
        assert first.poll() is None and (out / "INCOMPLETE").exists()  # the first run goes on undisturbed
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=60)
        log.close()
    assert first.returncode == 128 + signal.SIGTERM
    assert not (out / "report.html").exists()  # stopped before a report: none, rather than the old one
    with one_run_at_a_time(out):  # the lock died with its run
        pass


def test_local_uses_the_pipelines_defaults_with_cuda_and_the_cpu_demos_without():
    from liger_bench.cli.localrun import CPU_DEMO_OVERRIDES, local_defaults

    with_cuda, said = local_defaults(True, {})
    assert with_cuda == {"max_concurrency": 1, "train_retries": 0}
    assert said == "a CUDA GPU is present: the pipeline's defaults hold"
    without, said = local_defaults(False, {})
    assert without == {"max_concurrency": 1, "train_retries": 0, **CPU_DEMO_OVERRIDES}
    assert said == (
        "no CUDA GPU: the CPU demo's defaults (per_device_train_batch_size [8], max_seq_length [128], "
        "max_steps 10, frontier_search false) and the pipeline's for the rest"
    )
    _, said = local_defaults(False, {"max_steps": 50, "max_seq_length": [64]})
    assert said.startswith(
        "no CUDA GPU: the CPU demo's defaults (per_device_train_batch_size [8], frontier_search false) and"
    )
    _, said = local_defaults(False, dict(CPU_DEMO_OVERRIDES))
    assert said == "no CUDA GPU: the pipeline's defaults"


def test_a_hub_host_that_does_not_resolve_fails_at_once_with_what_to_do(tmp_path):
    """A real lookup of a name that cannot resolve (``.invalid``, RFC 2606), with two network retries allowed."""
    import os

    code = textwrap.dedent(
        """
        import sys
        from liger_bench.inputs.data import DatasetError, load_raw
        from liger_bench.inputs.modelio import ModelError, fetch_model

        try:
            fetch_model("org/model", sys.argv[1], network_retries=2)
        except ModelError as err:
            print(err)
        try:
            load_raw("org/data", network_retries=2)
        except DatasetError as err:
            print(err)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://nonexistent.invalid", HF_HOME=str(tmp_path / "hf"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, env=env)
    assert time.monotonic() - started < 30  # the retries alone would wait 20 + 40 s per download
    assert done.returncode == 0, done.stderr
    model, dataset = done.stdout.strip().splitlines()
    hint = (
        "is not a local path and the hub's host name 'nonexistent.invalid' does not resolve (no DNS, or no network); "
        "set HF_ENDPOINT to a hub this machine reaches, HF_HUB_OFFLINE=1 to use the local Hugging Face cache, or "
        "give a local path"
    )
    assert model == f"model_name: 'org/model' {hint}" and dataset == f"dataset_name: 'org/data' {hint}"
    assert "retrying" not in done.stdout


def test_an_empty_model_or_dataset_name_is_not_the_current_folder(tmp_path, monkeypatch):
    from liger_bench.inputs.data import DatasetError, load_raw
    from liger_bench.inputs.hub import is_local
    from liger_bench.inputs.modelio import ModelError, fetch_model

    monkeypatch.chdir(tmp_path)
    assert not is_local("") and not is_local("  ")
    with pytest.raises(ModelError, match="model_name is empty"):
        fetch_model("", tmp_path / "m")
    with pytest.raises(DatasetError, match="dataset_name is empty"):
        load_raw(" ")


def test_help_of_upload_and_run_says_what_they_do_each_default_once_and_the_params_format():
    def help_of(*args: str) -> str:
        done = subprocess.run(CLI + [*args, "--help"], capture_output=True, text=True, check=True)
        return " ".join(done.stdout.split())

    upload, run = help_of("upload"), help_of("run")
    for text in (upload, run, help_of("compile"), help_of("local")):
        assert "(default: None)" not in text
        assert re.search(r"\(default: [^)]*\) \(default:", text) is None
    assert "Compile and upload the pipeline (or a new version of it) to Kubeflow Pipelines at --host" in upload
    assert upload.count("liger-benchmark") == 1 and "pipeline name (default: liger-benchmark)" in upload
    assert "Compile the pipeline and start a run with an inputs file (--params)" in run
    assert "mapping of pipeline parameter name to value" in run and "per_device_train_batch_size: [8, 16, 32]" in run


def test_the_params_file_example_in_the_help_is_a_valid_inputs_file(tmp_path):

    from liger_bench.cli.kfp_client import load_params
    from liger_bench.cli.main import PARAMS_FILE_HELP
    from liger_bench.cli.userinput import check_grid, check_names, check_type

    example = tmp_path / "inputs.yaml"
    example.write_text("\n".join(line.strip() for line in PARAMS_FILE_HELP.splitlines() if line.startswith("  ")))
    params = load_params(example)
    declared = pipeline_parameters()
    check_names(list(params), declared)
    for name, value in params.items():
        check_type(name, value, declared[name].kfp_type)
    # use_liger × torch_compile (both defaults: two values each) × the three batch sizes × one length × n_runs 3
    assert check_grid(params) == 2 * 2 * 3 * 1 * 3 and params["base_config"] == {"learning_rate": 1e-5}


def test_the_kubeflow_guide_states_the_pipelines_defaults():
    """Every default in docs/run-on-kubeflow.md's parameter table that is a value (not prose) is the signature's."""
    declared = pipeline_parameters()
    guide = (Path(__file__).parents[1] / "docs" / "run-on-kubeflow.md").read_text()
    checked = 0
    for name, default in re.findall(r"^\| `(\w+)` \| ([^|]+) \|", guide, flags=re.MULTILINE):
        value = default.strip()
        if name not in declared or not re.fullmatch(r"`[^`]+`|-?\d[\d.e-]*", value):
            continue
        value = value.strip("`")
        try:
            stated = json.loads(value)
        except json.JSONDecodeError:
            stated = value
        assert stated == declared[name].default, name
        checked += 1
    assert checked >= 8


def test_every_command_line_test_and_case_the_failure_matrix_names_exists():
    text = (Path(__file__).parents[1] / "docs" / "failure-matrix.md").read_text()
    named = set(re.findall(r"tests/test_cli\.py::(test_[a-z0-9_]+)", text))
    assert named and named <= {name for name in globals() if name.startswith("test_")}, sorted(named)
    cited = set(re.findall(r"`([a-z0-9-]+)`", text))
    assert [mistake.name for mistake in MISTAKES if mistake.name not in cited] == []
