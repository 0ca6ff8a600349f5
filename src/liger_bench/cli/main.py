"""liger-bench: run the pipeline locally, compile it, upload it, trigger it.

Heavy imports live inside the subcommands so that ``--help`` is instant. A user's mistake ends in
one message on stderr and exit status 2, before anything slow starts; any other failure in one
message and exit status 1, with its traceback in a new log file (unique name, never through a
link) that the message names.

One module for all four commands: what a user sees of them (options, checks, messages) is read and
changed together; the work itself lives in the modules they call (userinput, localrun, outputdir,
kfp_client). Their parameters are declared where they belong and read from there: the pipeline's in its signature
(``liger_bench.plan.signature``), the compile options in ``ClusterOptions``, base_config's keys in ``TrainConfig``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import fields
from pathlib import Path

from liger_bench.cli.localrun import (
    CPU_DEMO_OVERRIDES,
    LOCAL_COMPILE_OPTIONS,
    LOCAL_OVERRIDES,
    RunFailed,
    local_parameter_types,
    run_local,
)
from liger_bench.cli.userinput import (
    QUOTING_RULE,
    UserError,
    check_grid,
    check_names,
    check_type,
    check_writable_file,
    parse_params,
)
from liger_bench.cluster import ClusterOptions
from liger_bench.plan.signature import pipeline_parameters
from liger_bench.versions import REGISTRY_ENV

HELP_WIDTH = 100


def compile_pipeline(output: Path, options: dict) -> Path:
    """Write the pipeline package (YAML) for a cluster."""
    from liger_bench.pipelines.liger_benchmark import build_pipeline

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
    """The ``compile`` options given, as ClusterOptions fields; the others keep ClusterOptions' defaults.

    Args:
        args: The parsed ``compile`` command line.
    """
    return {option.name: getattr(args, option.name) for option in fields(ClusterOptions) if hasattr(args, option.name)}


def add_compile_options(parser: argparse.ArgumentParser) -> None:
    """One option per ClusterOptions field, with the field's name, type, default and help.

    A boolean field defaults to false and its option turns it on. Options left out are absent
    from the parsed arguments, so that ClusterOptions' defaults hold (declared there only).

    Args:
        parser: The ``compile`` command's parser.
    """
    for option in fields(ClusterOptions):
        flag = "--" + option.name.replace("_", "-")
        shown = f"{option.metadata['help']} (default: {option.default})"
        if isinstance(option.default, bool):
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=shown)
        else:
            parser.add_argument(flag, type=type(option.default), default=argparse.SUPPRESS, help=shown)


def local_parameters_help() -> str:
    """What ``local --param`` takes, each with its default (the local run's own too) and help; base_config's keys."""
    from liger_bench.plan.config import TrainConfig
    from liger_bench.plan.grid import SET_BY_GRID

    options = {option.name: option for option in fields(ClusterOptions)}
    declared = [(p.name, p.default, p.help) for p in pipeline_parameters().values()]
    declared += [(name, options[name].default, options[name].metadata["help"]) for name in LOCAL_COMPILE_OPTIONS]
    lines = ["parameters (default, and the local run's own where it differs: always, or without CUDA):"]
    for name, default, text in declared:
        local = f"; local: {json.dumps(LOCAL_OVERRIDES[name])}" if name in LOCAL_OVERRIDES else ""
        if name in CPU_DEMO_OVERRIDES:
            local = f"; without CUDA: {json.dumps(CPU_DEMO_OVERRIDES[name])}"
        lines += _entry(name, json.dumps(default) + local, text)
    lines += ["", "base_config keys (settings of every run; the grid sets the others):"]
    for option in fields(TrainConfig):
        if option.name not in SET_BY_GRID:
            lines += _entry(option.name, json.dumps(option.default), option.metadata["help"])
    return "\n".join(lines)


def _entry(name: str, default: str, text: str) -> list[str]:
    indent = " " * 6
    return [f"  {name} ({default})", textwrap.fill(text, HELP_WIDTH, initial_indent=indent, subsequent_indent=indent)]


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, once: none for an option whose default is None or unset."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class ParametersHelp(DefaultsShown, argparse.RawDescriptionHelpFormatter):
    """Help with the options' defaults, and the description and the parameter list laid out as written."""


PARAMS_FILE_HELP = """\
The --params file is a YAML (or JSON, by its .json suffix) mapping of pipeline parameter name to
value; parameters it leaves out keep the pipeline's defaults ('liger-bench local --help' lists them), e.g.:

  model_name: microsoft/Phi-3-mini-4k-instruct
  per_device_train_batch_size: [8, 16, 32]
  n_runs: 3
  base_config: {learning_rate: 1.0e-5}
  gpu_node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
"""


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from liger_bench.package import PIPELINE_NAME

    parser = argparse.ArgumentParser(prog="liger-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    local_cmd = sub.add_parser(
        "local",
        help="run the pipeline on this machine (embedded model and data by default)",
        description=textwrap.fill(
            "Run the whole pipeline with kfp's local runner, on the embedded model and data unless model_name "
            "and dataset_name name others. --param takes the pipeline parameters and the compile options "
            f"{', '.join(LOCAL_COMPILE_OPTIONS)}. With a CUDA GPU the pipeline's defaults hold; without one, "
            f"the CPU demo's make a run of a few minutes. --param {QUOTING_RULE}.",
            HELP_WIDTH,
        ),
        epilog=local_parameters_help(),
        formatter_class=ParametersHelp,
    )
    local_cmd.add_argument("--output-dir", type=Path, default=Path("liger-bench-output"), help="where outputs go")
    local_cmd.add_argument(
        "--model-volume",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder that receives the model and dataset once (named by content) and that the training tasks read "
        "them from, as a cluster's --model-volume PVC (default: each task's artifacts hold the files)",
    )
    local_cmd.add_argument(
        "--param",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAME=JSON",
        help="pipeline parameter override, repeatable; strings need JSON quotes: --param model_name='\"org/model\"'",
    )

    compile_cmd = sub.add_parser(
        "compile",
        help="compile the pipeline package for a Kubeflow cluster",
        description=f"Write the pipeline package. Its images come from ${REGISTRY_ENV} (set it to the registry "
        "that images/build.py pushed to).",
        formatter_class=DefaultsShown,
    )
    compile_cmd.add_argument("--output", type=Path, default=Path("liger_benchmark.yaml"), help="YAML file to write")
    add_compile_options(compile_cmd)

    upload_help = "compile and upload the pipeline (or a new version of it)"
    upload_cmd = sub.add_parser(
        "upload",
        help=upload_help,
        description=f"{upload_help[0].upper()}{upload_help[1:]} to Kubeflow Pipelines at --host, with the "
        "default compile options unless --package names a package from 'liger-bench compile'.",
        formatter_class=DefaultsShown,
    )
    upload_cmd.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example/pipeline")
    upload_cmd.add_argument("--name", default=PIPELINE_NAME, help="pipeline name")
    upload_cmd.add_argument(
        "--version", default=None, help="version name, when the pipeline exists (default: package version + timestamp)"
    )
    upload_cmd.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user Kubeflow)")
    upload_cmd.add_argument("--package", type=Path, default=None, help="package from 'compile' (default: compile now)")
    add_model_volume_option(upload_cmd)

    run_help = "compile the pipeline and start a run with an inputs file"
    run_cmd = sub.add_parser(
        "run",
        help=run_help,
        description=textwrap.fill(
            f"{run_help[0].upper()}{run_help[1:]} (--params) on Kubeflow Pipelines at --host. The parameters are "
            "checked before anything is sent.",
            HELP_WIDTH,
        ),
        epilog=PARAMS_FILE_HELP,
        formatter_class=ParametersHelp,
    )
    run_cmd.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example/pipeline")
    run_cmd.add_argument("--params", type=Path, required=True, help="YAML or JSON file of pipeline parameters (below)")
    run_cmd.add_argument(
        "--experiment",
        default=None,
        help="KFP experiment name (default: $KF_PIPELINES_DEFAULT_EXPERIMENT_NAME or 'Default', as kfp decides)",
    )
    run_cmd.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user Kubeflow)")
    run_cmd.add_argument("--package", type=Path, default=None, help="package from 'compile' (default: compile now)")
    add_model_volume_option(run_cmd)
    return parser


def add_model_volume_option(parser: argparse.ArgumentParser) -> None:
    """``--model-volume`` for a command that compiles the package itself (``upload``, ``run``).

    Args:
        parser: The command's parser.
    """
    parser.add_argument(
        "--model-volume",
        default=argparse.SUPPRESS,
        metavar="PVC",
        help=f"compile with this model volume: {ClusterOptions.__dataclass_fields__['model_volume'].metadata['help']}",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``liger-bench`` console script."""
    args = make_parser().parse_args(argv)
    try:
        if args.command == "local":
            params = parse_params(getattr(args, "param", []), local_parameter_types())
            run_local(args.output_dir, params, args.model_volume)
        elif args.command == "compile":
            check_writable_file(args.output, "--output")
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
        log = write_traceback(args.command)
        print(f"liger-bench {args.command}: error: {type(error).__name__}: {error} (traceback: {log})", file=sys.stderr)
        return 1
    return 0


def write_traceback(command: str) -> Path:
    """Write the traceback being handled to a new file of a unique name in the temp folder; return its path.

    mkstemp creates the file with O_EXCL (mode 0600): a file or link planted at any name is never
    written through, and no two failures share a file.

    Args:
        command: The subcommand that failed, part of the file's name.
    """
    fd, name = tempfile.mkstemp(prefix=f"liger-bench-{command}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as log:
        log.write(traceback.format_exc())
    return Path(name)


def _warn(message: str) -> None:
    if message:
        print(message, file=sys.stderr)


def _remote(args: argparse.Namespace) -> None:
    from liger_bench.cli import kfp_client

    params = {}
    if args.package and not args.package.is_file():
        raise UserError(f"--package {args.package}: no such file; write one with 'liger-bench compile --output'")
    if args.package and hasattr(args, "model_volume"):
        raise UserError(
            f"--model-volume applies when {args.command} compiles the package; --package {args.package} was "
            "compiled already: give --model-volume to 'liger-bench compile' instead"
        )
    if args.command == "run":
        if not args.params.is_file():
            raise UserError(f"--params {args.params}: no such file")
        try:
            params = kfp_client.load_params(args.params)
        except ValueError as error:
            raise UserError(str(error)) from None
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or compile_pipeline(Path(tmp) / "liger_benchmark.yaml", compile_options(args))
        if args.command == "upload":
            info = kfp_client.upload_pipeline(args.host, str(package), args.name, args.version, args.namespace)
        else:
            declared = kfp_client.pipeline_parameters(package)
            check_names(list(params), dict.fromkeys(declared), option=f"--params {args.params}:")
            declared_types = {name: parameter.kfp_type for name, parameter in pipeline_parameters().items()}
            for name, value in params.items():
                if name in declared_types:
                    check_type(name, value, declared_types[name])
            check_grid(params)
            info = kfp_client.run_pipeline(args.host, str(package), params, args.experiment, None, args.namespace)
    print(json.dumps(info, indent=1, default=str))
    if not args.package:
        _warn(registry_warning())


if __name__ == "__main__":
    sys.exit(main())
