"""``liger-bench``: run the pipeline locally, compile it, upload it, trigger it.

Heavy imports live inside the subcommands so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# The embedded default: small enough for two CPU cores in a few minutes, same pipeline as a cluster.
LOCAL_DEFAULTS = {
    "use_liger": [True, False],
    "per_device_train_batch_size": [2, 4, 8],
    "max_seq_length": [128],
    "n_runs": 3,
    "max_steps": 10,
    "warmup_steps_to_skip": 3,
}
BUILD_OPTIONS = ("max_concurrency", "gpus_per_run")


def parse_params(pairs: list[str]) -> dict:
    """``NAME=JSON`` pairs to a dict; a value that is not JSON is taken as a string."""
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def local_params(overrides: dict) -> dict:
    """Parameters of a local run: the embedded model and dataset unless overridden."""
    params = {**LOCAL_DEFAULTS, **overrides}
    if "model_name" not in params or "dataset_name" not in params:
        from liger_bench.embedded import ensure_embedded

        model_dir, dataset_dir = ensure_embedded()
        params.setdefault("model_name", str(model_dir))
        params.setdefault("dataset_name", str(dataset_dir))
    return params


def run_local(output_dir: Path, overrides: dict) -> Path:
    """Run the whole pipeline with kfp's local runner; return the HTML report's path."""
    import torch
    from kfp import local
    from liger_bench.pipelines.liger_benchmark import ClusterOptions, build_pipeline

    from liger_bench.interrupt import interruptible
    from liger_bench.tracking import credentials_to_environment, redact_credentials
    from liger_bench.validation import pin_local_revisions, pipeline_arguments

    overrides = dict(overrides)
    build = {key: overrides.pop(key) for key in BUILD_OPTIONS if key in overrides}
    # Every local task sees the same GPU: runs that share it would measure each other.
    build.setdefault("max_concurrency", 1 if torch.cuda.is_available() else 2)
    params = pin_local_revisions(local_params(overrides))
    output_dir.mkdir(parents=True, exist_ok=True)
    # The local runner starts components with the python3 found on PATH: make it this interpreter's.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Caching reuses the downloads of an earlier run in the same output folder (cache under pipeline_root).
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(output_dir / "pipeline_root"),
        enable_caching=True,
    )
    pipeline = build_pipeline(ClusterOptions(**build))
    params = pipeline_arguments(params, {name: spec.type for name, spec in pipeline.component_spec.inputs.items()})
    # Local tasks inherit this process's environment: the URI's credentials travel there, never as an input.
    params["mlflow_tracking_uri"] = credentials_to_environment(params.get("mlflow_tracking_uri", ""))
    print(f"[liger-bench] running the pipeline locally with {redact_credentials(json.dumps(params))}", flush=True)
    started = time.monotonic()
    with interruptible(output_dir, params.get("mlflow_tracking_uri", "")):
        task = pipeline(**params)
    report = Path(task.output.path)
    print(f"[liger-bench] finished in {time.monotonic() - started:.0f} s", flush=True)
    print(f"[liger-bench] report: {report}", flush=True)
    return report


def compile_pipeline(output: Path, options: dict) -> Path:
    """Write the pipeline package (YAML) for a cluster."""
    from liger_bench.pipelines.liger_benchmark import ClusterOptions, build_pipeline

    from liger_bench.package import compile_package

    return compile_package(build_pipeline(ClusterOptions(**options)), output)


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="liger-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    local_cmd = sub.add_parser("local", help="run the pipeline on this machine (embedded model and data by default)")
    local_cmd.add_argument("--output-dir", type=Path, default=Path("liger-bench-output"), help="where outputs go")
    local_cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="pipeline parameter override (repeatable)",
    )

    compile_cmd = sub.add_parser("compile", help="compile the pipeline package for a Kubeflow cluster")
    compile_cmd.add_argument("--output", type=Path, default=Path("liger_benchmark.yaml"), help="YAML file to write")
    # Options left out take ClusterOptions' defaults (declared there only; docs/run-on-kubeflow.md lists them).
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

    upload_cmd = sub.add_parser("upload", help="compile and upload the pipeline (or a new version of it)")
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
    if args.command == "local":
        run_local(args.output_dir, parse_params(args.param))
    elif args.command == "compile":
        started = time.monotonic()
        given = {
            "max_concurrency": args.max_concurrency,
            "cache_training": args.cache_training or None,
            "hf_cache_pvc": args.hf_cache_pvc,
            "train_timeout_s": args.train_timeout_s,
            "train_cpu_limit": args.train_cpu_limit,
            "train_memory_limit": args.train_memory_limit,
            "gpus_per_run": args.gpus_per_run,
            "nodes_per_run": args.nodes_per_run,
            "max_gpus_per_run": args.max_gpus_per_run,
            "trainer_runtime": args.trainer_runtime,
            "trainer_pvc": args.trainer_pvc,
            "keep_trainjobs": args.keep_trainjobs or None,
        }
        options = {name: value for name, value in given.items() if value is not None}
        try:
            path = compile_pipeline(args.output, options)
        except ValueError as err:  # an option out of range: a usage error, not a crash
            make_parser().error(str(err))
        print(f"wrote {path} in {time.monotonic() - started:.1f} s")
    else:
        return _remote(args)
    return 0


def _remote(args: argparse.Namespace) -> int:
    import tempfile

    from liger_bench.pipelines.liger_benchmark import PIPELINE_NAME

    from liger_bench import kfp_client

    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or compile_pipeline(Path(tmp) / "liger_benchmark.yaml", {})
        if args.command == "upload":
            info = kfp_client.upload_pipeline(
                args.host, str(package), args.name or PIPELINE_NAME, args.version, args.namespace
            )
        else:
            info = kfp_client.run_pipeline(
                args.host,
                str(package),
                kfp_client.load_params(args.params),
                args.experiment,
                None,
                args.namespace,
            )
    print(json.dumps(info, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
