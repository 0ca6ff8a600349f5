"""liger-bench: run the pipeline locally, compile it, upload it, trigger it.

Heavy imports live inside the subcommands so that ``--help`` is instant. A user's mistake ends in
one message on stderr and exit status 2, before anything slow starts; any other failure in one
message and exit status 1, with its traceback in a log file that the message names.

One module for all four commands: what a user sees of them (options, checks, messages) is read and
changed together; the work itself lives in the modules they call (userinput, progress, kfp_client).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from liger_bench.userinput import (
    QUOTING_RULE,
    UserError,
    check_local_paths,
    check_names,
    check_type,
    parse_params,
)
from liger_bench.versions import REGISTRY_ENV

# The embedded default: small enough for two CPU cores in a few minutes, same pipeline as a cluster.
# One training at a time: runs sharing a GPU, or a few CPU cores, would measure each other.
LOCAL_DEFAULTS = {
    "use_liger": [True, False],
    "per_device_train_batch_size": [2, 4, 8],
    "max_seq_length": [128],
    "n_runs": 3,
    "max_steps": 10,
    "warmup_steps_to_skip": 3,
    "max_concurrency": 1,
}
# Compile-time options that ``local --param`` takes too, with their kfp type names.
BUILD_OPTIONS = {"max_concurrency": "Integer", "gpus_per_run": "Integer"}
# The pipeline's parameter names for ``local --help`` without importing kfp (a test keeps them equal).
PIPELINE_PARAMETERS = (
    "model_name",
    "model_revision",
    "dataset_name",
    "dataset_split",
    "dataset_revision",
    "use_liger",
    "per_device_train_batch_size",
    "max_seq_length",
    "n_runs",
    "max_steps",
    "warmup_steps_to_skip",
    "base_config",
    "max_grid_size",
    "min_success_ratio",
    "mlflow_tracking_uri",
    "mlflow_experiment",
    "hf_token_secret",
    "mlflow_secret",
    "gpu_node_selector",
    "gpu_tolerations",
)
# ``compile`` options, named as ClusterOptions fields.
COMPILE_OPTIONS = (
    "max_concurrency",
    "cache_training",
    "hf_cache_pvc",
    "train_timeout_s",
    "train_cpu_limit",
    "train_memory_limit",
    "gpus_per_run",
    "nodes_per_run",
    "max_gpus_per_run",
    "trainer_runtime",
    "trainer_pvc",
    "keep_trainjobs",
)


class RunFailed(Exception):
    """The local pipeline run failed; the message says where and names the log with the details."""


def pipeline_inputs() -> dict:
    """The pipeline's declared parameters (name to kfp input spec): names, types and defaults."""
    from liger_bench.pipelines.liger_benchmark import liger_benchmark

    return dict(liger_benchmark.component_spec.inputs)


def check_grid(params: dict, inputs: dict) -> int:
    """Expand the grid as prepare_grid will (same function, same messages); return its size."""
    import dataclasses

    from liger_bench.grid import GridError, GridSpec, expand_grid

    # GridSpec's scale fields (gpus_per_run, ...) are compile options, not pipeline inputs: their defaults hold here.
    names = [f.name for f in dataclasses.fields(GridSpec) if f.name in inputs]
    axes = {name: params.get(name, inputs[name].default) for name in names}
    try:
        return len(expand_grid(GridSpec(**axes)))
    except GridError as error:
        raise UserError(str(error)) from None


def with_embedded(params: dict) -> dict:
    """``params`` with the embedded model and dataset where they name none (made on first use)."""
    params = dict(params)
    if "model_name" not in params or "dataset_name" not in params:
        from liger_bench.embedded import ensure_embedded

        model_dir, dataset_dir = ensure_embedded()
        params.setdefault("model_name", str(model_dir))
        params.setdefault("dataset_name", str(dataset_dir))
    return params


def run_local(output_dir: Path, overrides: dict) -> Path:
    """Run the whole pipeline with kfp's local runner; return the path of the report artifact.

    The terminal gets what runs, one line per finished run and where the report and the log are;
    kfp's output and every task's log go to ``<output_dir>/logs/local-<time>.log``. The report is
    copied to ``<output_dir>/report.html``, which a browser opens.

    Raises:
        UserError: An unknown parameter, a bad grid value or a local path that does not exist
            (checked before the pipeline starts).
        RunFailed: The pipeline failed; the message names the task, its error and the log.

    """
    from liger_bench.progress import ProgressLog, captured, duration
    from liger_bench.validation import pipeline_arguments

    inputs = pipeline_inputs()
    types = _parameter_types(inputs)
    check_names(list(overrides), types)
    check_local_paths(overrides)
    merged = {**LOCAL_DEFAULTS, **overrides}
    build = {key: merged.pop(key) for key in BUILD_OPTIONS if key in merged}
    total_runs = check_grid(merged, inputs)
    try:
        merged = pipeline_arguments(merged, types)
    except ValueError as error:  # NaN or infinity somewhere
        raise UserError(str(error)) from None

    output_dir = output_dir.resolve()
    log_path = output_dir / "logs" / f"local-{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = sys.stdout
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        progress = ProgressLog(log, terminal, total_runs)
        axes = " × ".join(
            f"{name} {json.dumps(merged[name])}"
            for name in ("use_liger", "per_device_train_batch_size", "max_seq_length", "n_runs")
        )
        at_a_time = "one at a time" if build["max_concurrency"] == 1 else f"{build['max_concurrency']} at a time"
        progress.say(f"{total_runs} training run{'' if total_runs == 1 else 's'} ({axes}), {at_a_time}")
        progress.say(f"outputs: {output_dir}  log: {log_path}")
        started, started_at = time.monotonic(), time.time()
        try:
            with captured(progress):
                report = _run_pipeline(output_dir, with_embedded(merged), build, progress)
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


def _run_pipeline(output_dir: Path, params: dict, build: dict, progress) -> Path:
    import torch
    from kfp import local
    from liger_bench.pipelines.liger_benchmark import ClusterOptions, build_pipeline

    from liger_bench.interrupt import interruptible
    from liger_bench.tracking import credentials_to_environment, redact_credentials
    from liger_bench.validation import pin_local_revisions

    if not torch.cuda.is_available():
        progress.say("no CUDA GPU: Liger runs are skipped and the numbers check the plumbing, not Liger")
    params = pin_local_revisions(params)
    # The local runner starts components with the python3 found on PATH: make it this interpreter's.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Caching reuses the downloads of an earlier run in the same output folder (cache under pipeline_root).
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(output_dir / "pipeline_root"),
        enable_caching=True,
    )
    pipeline = build_pipeline(ClusterOptions(**build))
    # Local tasks inherit this process's environment: the URI's credentials travel there, never as an input.
    params["mlflow_tracking_uri"] = credentials_to_environment(params.get("mlflow_tracking_uri", ""))
    print(f"running the pipeline locally with {redact_credentials(json.dumps(params))}", flush=True)
    with interruptible(output_dir, params.get("mlflow_tracking_uri", "")):
        task = pipeline(**params)
    return Path(task.output.path)


def _publish(report: Path, output_dir: Path) -> Path:
    """Copy the report to ``<output_dir>/report.html``, a name a browser opens as a page.

    KFP's artifact file has no extension, so a browser would show its source.
    """
    report_html = output_dir / "report.html"
    shutil.copyfile(report, report_html)
    return report_html


def _report_written_since(output_dir: Path, since: float) -> Path | None:
    """The newest report artifact under ``output_dir`` written after ``since`` (a time.time())."""
    reports = [p for p in output_dir.glob("pipeline_root/*/analyze-results/report") if p.stat().st_mtime >= since]
    return max(reports, key=lambda p: p.stat().st_mtime, default=None)


def _failure(error: Exception, progress) -> str:
    """What failed in a local run: the failing task and its error."""
    from liger_bench.progress import ANSI

    text = ANSI.sub("", str(error))
    task = text.rpartition("Inner task failed: ")[2].rstrip(".") if "Inner task failed" in text else ""
    if task:
        cause = f"task {task} failed" + (f": {progress.last_error}" if progress.last_error else "")
    else:
        cause = f"{type(error).__name__}: {text}"
    return cause


def compile_pipeline(output: Path, options: dict) -> Path:
    """Write the pipeline package (YAML) for a cluster."""
    from liger_bench.pipelines.liger_benchmark import ClusterOptions, build_pipeline

    from liger_bench.package import compile_package

    return compile_package(build_pipeline(ClusterOptions(**options)), output)


def registry_warning() -> str:
    """A warning when the package names the default registry's images, which may not be yours; else ''."""
    if os.environ.get(REGISTRY_ENV):
        return ""
    from liger_bench.versions import image

    return (
        f"liger-bench: warning: ${REGISTRY_ENV} is not set, so the package names the images {image('cpu')} "
        f"and {image('cuda')}; build and push your own with images/build.py and set {REGISTRY_ENV} to that "
        "registry before compiling"
    )


def compile_options(args: argparse.Namespace) -> dict:
    """The ``compile`` options given, as ClusterOptions fields; the others keep ClusterOptions' defaults."""
    given = {name: getattr(args, name) for name in COMPILE_OPTIONS}
    for flag in ("cache_training", "keep_trainjobs"):  # store_true: absent means ClusterOptions' default
        given[flag] = given[flag] or None
    return {name: value for name, value in given.items() if value is not None}


class ClusterDefaultsHelp(argparse.HelpFormatter):
    """Help that shows each compile option's default from ClusterOptions, where it is declared.

    The pipeline module (and kfp) is imported only when this help is printed, so other help stays instant.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        from liger_bench.pipelines.liger_benchmark import ClusterOptions

        default = getattr(ClusterOptions(), action.dest, None) if action.dest in COMPILE_OPTIONS else action.default
        shown = default not in (None, argparse.SUPPRESS) and action.dest != "help"
        return f"{action.help} (default: {default!s})" if shown else str(action.help)


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="liger-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    defaults_shown = argparse.ArgumentDefaultsHelpFormatter

    local_cmd = sub.add_parser(
        "local",
        help="run the pipeline on this machine (embedded model and data by default)",
        description="Run the whole pipeline with kfp's local runner. Pipeline parameters: "
        + ", ".join(PIPELINE_PARAMETERS)
        + f", and the compile option max_concurrency. Local defaults, for a quick demo: {json.dumps(LOCAL_DEFAULTS)}"
        f"; the others keep the pipeline's defaults. --param {QUOTING_RULE}.",
        formatter_class=defaults_shown,
    )
    local_cmd.add_argument("--output-dir", type=Path, default=Path("liger-bench-output"), help="where outputs go")
    local_cmd.add_argument(
        "--param",
        action="append",
        default=argparse.SUPPRESS,  # no "(default: ...)" in the help
        metavar="NAME=JSON",
        help="pipeline parameter override, repeatable; strings need JSON quotes: --param model_name='\"org/model\"'",
    )

    compile_cmd = sub.add_parser(
        "compile",
        help="compile the pipeline package for a Kubeflow cluster",
        description=f"Write the pipeline package. Its images come from ${REGISTRY_ENV} (set it to the registry "
        "that images/build.py pushed to).",
        formatter_class=ClusterDefaultsHelp,
    )
    compile_cmd.add_argument("--output", type=Path, default=Path("liger_benchmark.yaml"), help="YAML file to write")
    # Options left out take ClusterOptions' defaults (declared there only; the help shows them).
    compile_cmd.add_argument("--max-concurrency", type=int, help="training runs at a time (GPUs)")
    compile_cmd.add_argument("--cache-training", action="store_true", help="let KFP reuse cached training results")
    compile_cmd.add_argument("--hf-cache-pvc", help="PVC mounted as HF_HOME in download tasks")
    compile_cmd.add_argument("--train-timeout-s", type=int, help="seconds before a training run is stopped as hung")
    compile_cmd.add_argument("--train-cpu-limit", help="CPU limit of each training pod")
    compile_cmd.add_argument("--train-memory-limit", help="memory limit of each training pod")
    compile_cmd.add_argument("--gpus-per-run", type=int, help="GPUs of one node per grid point (FSDP above 1)")
    compile_cmd.add_argument("--nodes-per-run", type=int, help="nodes per grid point (a Kubeflow Trainer TrainJob)")
    compile_cmd.add_argument("--max-gpus-per-run", type=int, help="prepare_grid refuses runs asking for more GPUs")
    compile_cmd.add_argument("--trainer-runtime", help="ClusterTrainingRuntime of TrainJobs, e.g. torch-distributed")
    compile_cmd.add_argument("--trainer-pvc", help="ReadWriteMany PVC shared by training tasks and TrainJob nodes")
    compile_cmd.add_argument("--keep-trainjobs", action="store_true", help="keep finished TrainJobs (for their logs)")

    upload_cmd = sub.add_parser(
        "upload", help="compile and upload the pipeline (or a new version of it)", formatter_class=defaults_shown
    )
    upload_cmd.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example/pipeline")
    upload_cmd.add_argument("--name", default=None, help="pipeline name (default: liger-benchmark)")
    upload_cmd.add_argument(
        "--version", default=None, help="version name, when the pipeline exists (default: package version + timestamp)"
    )
    upload_cmd.add_argument("--namespace", default=None, help="Kubeflow profile namespace")
    upload_cmd.add_argument("--package", type=Path, default=None, help="package from 'compile' (default: compile now)")

    run_cmd = sub.add_parser("run", help="compile the pipeline and start a run with an inputs file")
    run_cmd.add_argument("--host", required=True, help="KFP API endpoint")
    run_cmd.add_argument("--params", type=Path, required=True, help="YAML or JSON file of pipeline parameters")
    run_cmd.add_argument("--experiment", default=None, help="KFP experiment name")
    run_cmd.add_argument("--namespace", default=None, help="Kubeflow profile namespace")
    run_cmd.add_argument("--package", type=Path, default=None, help="package from 'compile' (default: compile now)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``liger-bench`` console script."""
    args = make_parser().parse_args(argv)
    try:
        if args.command == "local":
            run_local(args.output_dir, parse_params(getattr(args, "param", []), _parameter_types(pipeline_inputs())))
        elif args.command == "compile":
            started = time.monotonic()
            try:
                path = compile_pipeline(args.output, compile_options(args))
            except ValueError as error:  # an option out of range
                raise UserError(str(error)) from None
            print(f"wrote {path} in {time.monotonic() - started:.1f} s")
            _warn(registry_warning())
        else:
            _remote(args)
    except UserError as error:
        print(f"liger-bench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"liger-bench {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - one line on the terminal, the traceback in a file
        log = Path(tempfile.gettempdir()) / f"liger-bench-{args.command}.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        print(f"liger-bench {args.command}: error: {type(error).__name__}: {error} (traceback: {log})", file=sys.stderr)
        return 1
    return 0


def _warn(message: str) -> None:
    if message:
        print(message, file=sys.stderr)


def _parameter_types(inputs: dict) -> dict[str, str]:
    return {**{name: spec.type for name, spec in inputs.items()}, **BUILD_OPTIONS}


def _remote(args: argparse.Namespace) -> None:
    from liger_bench import kfp_client

    params = {}
    if args.command == "run":
        if not args.params.is_file():
            raise UserError(f"--params {args.params}: no such file")
        try:
            params = kfp_client.load_params(args.params)
        except ValueError as error:
            raise UserError(str(error)) from None
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or compile_pipeline(Path(tmp) / "liger_benchmark.yaml", {})
        if args.command == "upload":
            from liger_bench.pipelines.liger_benchmark import PIPELINE_NAME

            name = args.name or PIPELINE_NAME
            info = kfp_client.upload_pipeline(args.host, str(package), name, args.version, args.namespace)
        else:
            declared = kfp_client.pipeline_parameters(package)
            check_names(list(params), dict.fromkeys(declared), option=f"--params {args.params}:")
            inputs = pipeline_inputs()
            for name, value in params.items():
                if name in inputs:
                    check_type(name, value, inputs[name].type)
            check_grid(params, inputs)
            info = kfp_client.run_pipeline(args.host, str(package), params, args.experiment, None, args.namespace)
    print(json.dumps(info, indent=1, default=str))
    if not args.package:
        _warn(registry_warning())


if __name__ == "__main__":
    sys.exit(main())
