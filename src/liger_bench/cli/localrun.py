"""The ``local`` command's work: the whole pipeline on this machine, with kfp's local runner.

The same components as on a cluster, on the embedded model and data unless the parameters name
others. kfp and torch are imported only when a run starts, so that the CLI's checks and help stay
instant.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from liger_bench.cli.outputdir import REPORT, one_run_at_a_time, set_aside_previous_report
from liger_bench.cli.userinput import UserError, check_grid, check_local_paths, check_names, check_writable_folder
from liger_bench.cluster import ClusterOptions
from liger_bench.plan.signature import KFP_TYPES, pipeline_parameters
from liger_bench.vocabulary import NO_ABLATION

# The local run's own defaults: one training at a time, since runs sharing a GPU, or a few CPU cores,
# would measure each other; and no re-run of a failed training task, which here is no lost pod but
# an interrupt (kfp's runner would start the re-run while the interrupt stops the run's processes).
# Every other parameter keeps the pipeline's (and ClusterOptions') default.
LOCAL_OVERRIDES = {"max_concurrency": 1, "train_retries": 0}
# Without CUDA, the CPU demo's defaults: small enough for two CPU cores in a few minutes, same pipeline
# as a cluster. With CUDA they would measure the transient of 10-step runs, so there the pipeline's hold.
# One batch size and three repeats (12 runs, half of them Liger's, skipped on a CPU): the compile arm's
# first run compiles for a minute or more on two busy cores (later repeats reuse inductor's on-disk
# cache), so the demo's batch axis went to keep it at the time of the demo before the compile arm.
# No memory frontier search: without a GPU there is no GPU memory to fill, and doubling the batch up to
# frontier_max_batch_size in host memory would take longer than the demo; the report says it was not
# searched. ``--param frontier_search=true`` searches host memory all the same.
CPU_DEMO_OVERRIDES = {
    "per_device_train_batch_size": [8],
    "max_seq_length": [128],
    "max_steps": 10,
    "frontier_search": False,
}
# Compile options that ``local --param`` takes too (the local run compiles the pipeline itself).
LOCAL_COMPILE_OPTIONS = ("max_concurrency", "gpus_per_run", "train_retries")


def local_parameter_types() -> dict[str, str]:
    """What ``local --param`` takes: the pipeline's parameters and LOCAL_COMPILE_OPTIONS, name to kfp type name."""
    options = {option.name: option for option in dataclasses.fields(ClusterOptions)}
    return {
        **{name: parameter.kfp_type for name, parameter in pipeline_parameters().items()},
        **{name: KFP_TYPES[options[name].type] for name in LOCAL_COMPILE_OPTIONS},
    }


def local_defaults(cuda_available: bool, overrides: dict) -> tuple[dict, str]:
    """The local run's own defaults on this machine, and the line that says which defaults hold.

    Args:
        cuda_available: Whether torch sees a CUDA GPU here.
        overrides: The parameters given (``local --param``); the line names only defaults they leave.
    """
    if cuda_available:
        return dict(LOCAL_OVERRIDES), "a CUDA GPU is present: the pipeline's defaults hold"
    demo = {name: value for name, value in CPU_DEMO_OVERRIDES.items() if name not in overrides}
    listed = ", ".join(f"{name} {json.dumps(value)}" for name, value in demo.items())
    said = f"the CPU demo's defaults ({listed}) and the pipeline's for the rest" if demo else "the pipeline's defaults"
    return {**LOCAL_OVERRIDES, **CPU_DEMO_OVERRIDES}, f"no CUDA GPU: {said}"


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch: a few seconds)."""
    import torch

    return torch.cuda.is_available()


class RunFailed(Exception):
    """The local pipeline run failed; the message says where and names the log with the details."""


def with_embedded(params: dict) -> dict:
    """``params`` with the embedded model and dataset where they name none (made on first use)."""
    params = dict(params)
    if "model_name" not in params or "dataset_name" not in params:
        from liger_bench.inputs.embedded import ensure_embedded

        model_dir, dataset_dir = ensure_embedded()
        params.setdefault("model_name", str(model_dir))
        params.setdefault("dataset_name", str(dataset_dir))
    return params


def run_local(output_dir: Path, overrides: dict, model_volume: Path | None = None) -> Path:
    """Run the whole pipeline with kfp's local runner; return the path of the report artifact.

    The terminal gets what runs, one line per finished run and where the report and the log are;
    kfp's output and every task's log go to ``<output_dir>/logs/local-<time>.log``. The report is
    copied to ``<output_dir>/report.html``, which a browser opens.

    Args:
        output_dir: Where the pipeline root, the logs and ``report.html`` go.
        overrides: Parameters given (``local --param``); ``local_defaults``, then the pipeline's
            defaults, hold for the others.
        model_volume: Folder that receives the model and dataset once and that the tasks read them
            from (``local --model-volume``); None: the artifacts hold the files.

    Raises:
        UserError: An unknown parameter, a bad grid value or option, a local path that does not
            exist, an output folder that cannot be one (all checked before anything is created), or
            an output folder another run holds.
        RunFailed: The pipeline failed; the message names the task, its error and the log.

    """
    from liger_bench.plan.validation import pipeline_arguments

    types = local_parameter_types()
    check_names(list(overrides), types)
    check_local_paths(overrides)
    check_writable_folder(output_dir, "--output-dir")
    if model_volume is not None:
        check_writable_folder(model_volume, "--model-volume")
        # The local runner mounts nothing: the folder is both the volume and where the tasks see it.
        folder = str(model_volume.expanduser().resolve())
        build_volume = {"model_volume": folder, "model_volume_mount": folder}
    else:
        build_volume = {}
    cuda = cuda_available()
    defaults, defaults_line = local_defaults(cuda, overrides)
    merged = {**defaults, **overrides}
    build = {key: merged.pop(key) for key in LOCAL_COMPILE_OPTIONS if key in merged}
    try:
        options = ClusterOptions(**build, **build_volume)
    except ValueError as error:  # max_concurrency=0, which kfp would read as "no limit"
        raise UserError(str(error)) from None
    total_runs = check_grid(merged)
    try:
        merged = pipeline_arguments(merged, types)
    except ValueError as error:  # NaN or infinity somewhere
        raise UserError(str(error)) from None

    output_dir = output_dir.expanduser().resolve()
    if options.model_volume:
        Path(options.model_volume).mkdir(parents=True, exist_ok=True)
    with one_run_at_a_time(output_dir):
        return _run_locked(output_dir, merged, options, total_runs, defaults_line, cuda)


def _run_locked(
    output_dir: Path, params: dict, options: ClusterOptions, total_runs: int, defaults_line: str, cuda: bool
) -> Path:
    from liger_bench.cli.progress import ProgressLog, captured, duration

    previous_report = set_aside_previous_report(output_dir)
    log_path = output_dir / "logs" / f"local-{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        progress = ProgressLog(log, terminal, total_runs)
        declared = pipeline_parameters()
        axes = " × ".join(
            f"{name} {json.dumps(params.get(name, declared[name].default))}"
            for name in ("use_liger", "torch_compile", "per_device_train_batch_size", "max_seq_length", "n_runs")
        )
        ablation = params.get("kernel_ablation", declared["kernel_ablation"].default)
        if ablation != NO_ABLATION:  # its arms are counted once prepare_grid has read the model's type
            axes += f", before the arms of kernel_ablation {json.dumps(ablation)}"
        concurrency = options.max_concurrency
        at_a_time = "one at a time" if concurrency == 1 else f"{concurrency} at a time"
        progress.say(f"{total_runs} training run{'' if total_runs == 1 else 's'} ({axes}), {at_a_time}")
        progress.say(defaults_line)
        if not cuda:
            progress.say("Liger runs are skipped without CUDA: the numbers check the plumbing, not Liger")
        progress.say(f"outputs: {output_dir}  log: {log_path}")
        if previous_report:
            progress.say(f"the previous run's report is now {previous_report}")
        started, started_at = time.monotonic(), time.time()
        try:
            with captured(progress):
                report = _run_pipeline(output_dir, with_embedded(params), options)
        except Exception as error:
            traceback.print_exc(file=log)
            # analyze_results fails after writing the report when too few runs trained: show that report.
            written = _report_written_since(output_dir, started_at)
            shown = f"; report: {_publish(written, output_dir)}" if written else ""
            raise RunFailed(f"{_failure(error, progress)}{shown}; log: {log_path}") from None
        report_html = _publish(report, output_dir)
        progress.say(f"finished in {duration(time.monotonic() - started)}: {progress.counts()}")
        progress.say(f"report: {report_html}")
        progress.say(f"log: {log_path}")
    return report


def _run_pipeline(output_dir: Path, params: dict, options: ClusterOptions) -> Path:
    from kfp import local
    from liger_bench.pipelines.liger_benchmark import build_pipeline

    from liger_bench.cli.interrupt import interruptible
    from liger_bench.credentials import redact_credentials
    from liger_bench.plan.validation import pin_local_revisions

    params = pin_local_revisions(params)
    # The local runner starts components with the python3 found on PATH: make it this interpreter's.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Caching reuses the downloads of an earlier run in the same output folder (cache under pipeline_root).
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(output_dir / "pipeline_root"),
        enable_caching=True,
    )
    pipeline = build_pipeline(options)
    print(f"running the pipeline locally with {redact_credentials(json.dumps(params))}", flush=True)
    with interruptible(output_dir, params.get("mlflow_tracking_uri", "")):
        task = pipeline(**params)
    return Path(task.output.path)


def _publish(report: Path, output_dir: Path) -> Path:
    """Copy the report to ``<output_dir>/report.html``, a name a browser opens as a page.

    KFP's artifact file has no extension, so a browser would show its source.
    """
    report_html = output_dir / REPORT
    shutil.copyfile(report, report_html)
    return report_html


def _report_written_since(output_dir: Path, since: float) -> Path | None:
    """The newest report artifact under ``output_dir`` written after ``since`` (a time.time())."""
    reports = [p for p in output_dir.glob("pipeline_root/*/analyze-results/report") if p.stat().st_mtime >= since]
    return max(reports, key=lambda p: p.stat().st_mtime, default=None)


def _failure(error: Exception, progress) -> str:
    """What failed in a local run: the failing task and its error."""
    from liger_bench.cli.progress import ANSI

    text = ANSI.sub("", str(error))
    task = text.rpartition("Inner task failed: ")[2].rstrip(".") if "Inner task failed" in text else ""
    if task:
        cause = f"task {task} failed" + (f": {progress.last_error}" if progress.last_error else "")
    else:
        cause = f"{type(error).__name__}: {text}"
    return cause
