"""The benchmark pipeline: downloads → grid → memory frontier search → one training task per grid point → report.

No ``from __future__ import annotations`` here: kfp reads the parameter annotations as types.
"""

from kfp import dsl, kubernetes
from kfp.dsl import HTML
from liger_bench.components.analyze_results import analyze_results
from liger_bench.components.download_dataset import download_dataset
from liger_bench.components.download_model import download_model
from liger_bench.components.find_frontier import find_frontier
from liger_bench.components.prepare_grid import prepare_grid
from liger_bench.components.start_tracking import start_tracking
from liger_bench.components.train_model import train_model

from liger_bench.cluster import TRAIN_POD_GRACE_S, ClusterOptions
from liger_bench.package import PIPELINE_NAME

HF_TOKEN_KEYS = {"HF_TOKEN": "HF_TOKEN"}
MLFLOW_CREDENTIAL_KEYS = {
    "MLFLOW_TRACKING_TOKEN": "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}


def reads_the_hub(task: dsl.PipelineTask, hf_token_secret: str, options: ClusterOptions) -> None:
    """A download task: cached; the hub token from its optional Secret; the hub cache and mirror when compiled in.

    Args:
        task: A download_model or download_dataset task.
        hf_token_secret: Name of the Kubernetes Secret with key HF_TOKEN.
        options: The compile-time settings (``hf_cache_pvc``, ``hf_cache_mount``, ``hf_endpoint``).
    """
    task.set_caching_options(True)
    kubernetes.use_secret_as_env(task, hf_token_secret, HF_TOKEN_KEYS, optional=True)
    if options.hf_cache_pvc:
        kubernetes.mount_pvc(task, options.hf_cache_pvc, options.hf_cache_mount)
        task.set_env_variable("HF_HOME", options.hf_cache_mount)
    if options.hf_endpoint:
        task.set_env_variable("HF_ENDPOINT", options.hf_endpoint)


def reads_staged_inputs(task: dsl.PipelineTask, options: ClusterOptions) -> None:
    """A task that writes or reads the model and dataset: the model volume mounted, when compiled with one.

    kfp-kubernetes 2.17 mounts a PVC read-write only (its ``PvcMount`` has no read-only field); the
    reading tasks open the staged folders and write nothing there.

    Args:
        task: A download, prepare_grid, find_frontier or train_model task.
        options: The compile-time settings (``model_volume``, ``model_volume_mount``).
    """
    if options.model_volume:
        kubernetes.mount_pvc(task, options.model_volume, options.model_volume_mount)


def writes_to_mlflow(task: dsl.PipelineTask, mlflow_secret: str, cache: bool) -> None:
    """A task that logs to MLflow: the credentials from their optional Secret; cached only when ``cache``.

    Args:
        task: A start_tracking, train_model or analyze_results task.
        mlflow_secret: Name of the Kubernetes Secret with the MLflow credentials.
        cache: Whether kfp may reuse an earlier run's outputs (then nothing is logged again).
    """
    task.set_caching_options(cache)
    kubernetes.use_secret_as_env(task, mlflow_secret, MLFLOW_CREDENTIAL_KEYS, optional=True)


def on_gpu_nodes(
    task: dsl.PipelineTask, options: ClusterOptions, gpu_node_selector: dict, gpu_tolerations: list
) -> None:
    """A pod on the GPU nodes: a training pod's CPU, memory and shared memory.

    Args:
        task: A find_frontier or train_model task.
        options: The compile-time settings (resources, shm size).
        gpu_node_selector: Node labels of the GPU nodes (a pipeline parameter).
        gpu_tolerations: Tolerations of the GPU nodes' taints (a pipeline parameter).
    """
    task.set_cpu_request(options.train_cpu_request).set_cpu_limit(options.train_cpu_limit)
    task.set_memory_request(options.train_memory_request).set_memory_limit(options.train_memory_limit)
    kubernetes.add_node_selector_json(task, gpu_node_selector)
    kubernetes.add_toleration_json(task, gpu_tolerations)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=options.shm_size
    )


def trains_on_gpus(
    task: dsl.PipelineTask, options: ClusterOptions, gpu_node_selector: dict, gpu_tolerations: list
) -> None:
    """A training pod: its GPUs (or the TrainJob volume), CPU and memory, GPU nodes, shared memory, deadline.

    Args:
        task: A train_model task.
        options: The compile-time settings (resources, shm size, timeout, the TrainJob volume).
        gpu_node_selector: Node labels of the GPU nodes (a pipeline parameter).
        gpu_tolerations: Tolerations of the GPU nodes' taints (a pipeline parameter).
    """
    if options.nodes_per_run > 1:
        # The TrainJob's nodes hold the GPUs; this task submits, watches and collects.
        kubernetes.mount_pvc(task, options.trainer_pvc, options.trainer_pvc_mount)
    else:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(options.gpus_per_run)
    on_gpu_nodes(task, options, gpu_node_selector, gpu_tolerations)
    kubernetes.set_timeout(task, options.train_timeout_s + TRAIN_POD_GRACE_S)


def build_pipeline(options: ClusterOptions = ClusterOptions()):
    """Build the pipeline function for ``options``; ``liger_benchmark`` is the default build."""

    @dsl.pipeline(name=PIPELINE_NAME, description="Does Liger Kernel make fine-tuning faster and leaner?")
    def liger_benchmark(
        model_name: str = "microsoft/Phi-3-mini-4k-instruct",
        model_revision: str = "",
        dataset_name: str = "tatsu-lab/alpaca",
        dataset_split: str = "train",
        dataset_revision: str = "",
        use_liger: list = [True, False],
        torch_compile: list = [False, True],
        per_device_train_batch_size: list = [8, 16],
        max_seq_length: list = [512],
        n_runs: int = 3,
        max_steps: int = 100,
        warmup_steps_to_skip: int = 3,
        base_config: dict = {},
        max_grid_size: int = 256,
        kernel_ablation: str = "off",
        min_success_ratio: float = 0.1,
        frontier_search: bool = True,
        frontier_max_batch_size: int = 1024,
        frontier_resolution: int = 1,
        frontier_time_budget_s: float = 3600.0,
        frontier_probe_steps: int = 3,
        frontier_seq_batch_size: int = 0,
        gpu_hour_price: float = 0.0,
        mlflow_tracking_uri: str = "",
        mlflow_experiment: str = "liger-benchmark",
        hf_token_secret: str = "liger-bench-hf-token",
        mlflow_secret: str = "liger-bench-mlflow",
        gpu_node_selector: dict = {},
        gpu_tolerations: list = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    ) -> HTML:
        """Fine-tune a model with and without Liger Kernel and report speed, memory and loss parity.

        Args:
            model_name: Hugging Face model id or a local model folder.
            model_revision: Model branch, tag or commit; empty: default branch (local folder: content hash).
            dataset_name: Hugging Face dataset id or a local file/folder (alpaca or prompt/completion columns).
            dataset_split: Dataset split to train on.
            dataset_revision: Dataset branch, tag or commit; empty: default branch (local path: content hash).
            use_liger: Liger on and/or off: true (Liger kernels) and/or false (stock transformers).
            torch_compile: torch.compile on and/or off, crossed with use_liger: up to four variants (baseline,
                liger, compile, liger-compile), each compared with the baseline (stock, eager).
            per_device_train_batch_size: Batch sizes to measure, per GPU (one GPU per run unless compiled otherwise);
                "max": each variant at its own searched memory frontier (needs frontier_search).
            max_seq_length: Sequence lengths to measure (rows are truncated to this).
            n_runs: Repeats of every (variant, batch size, sequence length) cell.
            max_steps: Optimizer steps per run; must exceed warmup_steps_to_skip. 100 reached a steady
                rate on alpaca-like variable-length data (steps of a new batch shape left out).
            warmup_steps_to_skip: First steps of each run left out of every aggregate.
            base_config: Other training settings for every run, e.g. {"learning_rate": 1e-5, "liger_swiglu": false}.
            max_grid_size: Refuse grids with more runs than this.
            kernel_ablation: Per-kernel attribution: 'off'; 'each' (every kernel liger-kernel enables by default
                for the model type, alone); 'leave-one-out' (all of them but one); 'both'. Adds eager Liger runs:
                one per default kernel (Phi-3: 4) for 'each' or 'leave-one-out', two for 'both', times batch
                sizes × sequence lengths × n_runs; needs use_liger [true, false] and torch_compile with false.
            min_success_ratio: Fail the pipeline (after writing the report) when fewer runs are ok (diverged: not ok).
            frontier_search: Search each variant's memory frontier (the largest per-device batch that trains) at
                every sequence length, in probes of a few steps on a GPU node, before the training runs; each
                kernel-ablation arm is a variant with its own search.
            frontier_max_batch_size: Largest per-device batch the search probes; a variant that trains it fits
                at least that.
            frontier_resolution: The search ends when the largest batch that trained and the smallest that ran
                out of memory are at most this far apart (1: the exact frontier).
            frontier_time_budget_s: Seconds one search (one variant, one sequence length) may take; it ends
                with what it has.
            frontier_probe_steps: Optimizer steps each probe trains; at least 2, because the first step
                allocates the optimizer's state and only the next ones train with it.
            frontier_seq_batch_size: Also search each variant's longest max_seq_length that trains at this
                per-device batch (rows packed to the length, in steps of 64 tokens, up to the model's context
                length); 0: off.
            gpu_hour_price: Price of one GPU-hour in any currency: the report's cost per million tokens; 0: none.
            mlflow_tracking_uri: MLflow tracking server, e.g. http://mlflow.kubeflow.svc.cluster.local:5000; empty: off
                (or the server of Kubeflow Pipelines' own MLflow integration, whose runs are then filled).
            mlflow_experiment: MLflow experiment that receives the runs.
            hf_token_secret: Kubernetes Secret with key HF_TOKEN, for gated models (optional).
            mlflow_secret: Kubernetes Secret with MLflow credentials (MLFLOW_TRACKING_TOKEN or USERNAME/PASSWORD).
            gpu_node_selector: Node labels for training pods, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}.
            gpu_tolerations: Tolerations for training pods (GPU node taints).
        """
        # Retries happen inside the download tasks, for network errors only: a kfp retry policy
        # would also repeat errors that cannot change (a missing path, a parse error, a gated model).
        model_task = download_model(
            model_name=model_name,
            model_revision=model_revision,
            network_retries=options.download_retries,
            staging_dir=options.staging_dir,
        )
        dataset_task = download_dataset(
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            dataset_revision=dataset_revision,
            network_retries=options.download_retries,
            staging_dir=options.staging_dir,
        )
        for task in (model_task, dataset_task):
            reads_the_hub(task, hf_token_secret, options)
            reads_staged_inputs(task, options)
        model, dataset = model_task.outputs["model"], dataset_task.outputs["dataset"]

        grid_task = prepare_grid(
            model=model,
            dataset=dataset,
            use_liger=use_liger,
            torch_compile=torch_compile,
            per_device_train_batch_size=per_device_train_batch_size,
            max_seq_length=max_seq_length,
            n_runs=n_runs,
            max_steps=max_steps,
            warmup_steps_to_skip=warmup_steps_to_skip,
            base_config=base_config,
            max_grid_size=max_grid_size,
            kernel_ablation=kernel_ablation,
            min_success_ratio=min_success_ratio,
            mlflow_tracking_uri=mlflow_tracking_uri,
            frontier_search=frontier_search,
            frontier_max_batch_size=frontier_max_batch_size,
            frontier_resolution=frontier_resolution,
            frontier_time_budget_s=frontier_time_budget_s,
            frontier_probe_steps=frontier_probe_steps,
            frontier_seq_batch_size=frontier_seq_batch_size,
            gpu_hour_price=gpu_hour_price,
            **options.grid_scale(),
        )
        grid_task.set_caching_options(True)
        reads_staged_inputs(grid_task, options)
        tracking_task = start_tracking(
            grid=grid_task.output,
            model=model,
            dataset=dataset,
            mlflow_tracking_uri=mlflow_tracking_uri,
            mlflow_experiment=mlflow_experiment,
            pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        writes_to_mlflow(tracking_task, mlflow_secret, cache=False)  # a new parent run for every pipeline run

        # One pod searches every (variant, sequence length) in turn; each search ends at its own time budget.
        frontier_task = find_frontier(
            grid=grid_task.output,
            model=model,
            dataset=dataset,
            frontier_search=frontier_search,
            frontier_max_batch_size=frontier_max_batch_size,
            frontier_resolution=frontier_resolution,
            frontier_time_budget_s=frontier_time_budget_s,
            frontier_probe_steps=frontier_probe_steps,
            frontier_seq_batch_size=frontier_seq_batch_size,
        )
        frontier_task.set_caching_options(options.cache_training)
        if options.nodes_per_run == 1:  # a run of several nodes is not searched (find_frontier says why)
            frontier_task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(options.gpus_per_run)
        on_gpu_nodes(frontier_task, options, gpu_node_selector, gpu_tolerations)
        reads_staged_inputs(frontier_task, options)

        with dsl.ParallelFor(frontier_task.outputs["Output"], parallelism=options.max_concurrency) as config:
            train_task = train_model(
                config=config,
                model=model,
                dataset=dataset,
                mlflow_tracking_uri=mlflow_tracking_uri,
                mlflow_experiment=mlflow_experiment,
                tracking=tracking_task.outputs["tracking"],
                train_timeout_s=options.train_timeout_s,
                trainer=options.trainer_settings(),
                gpu_node_selector=gpu_node_selector,
                gpu_tolerations=gpu_tolerations,
            )
            writes_to_mlflow(train_task, mlflow_secret, cache=options.cache_training)
            trains_on_gpus(train_task, options, gpu_node_selector, gpu_tolerations)
            reads_staged_inputs(train_task, options)
            # train_model records every grid point's own failure and succeeds: a failed task is lost
            # infrastructure, so a re-run repeats no outcome (docs/run-on-kubeflow.md, "When a training pod is lost").
            if options.train_retries:
                train_task.set_retry(num_retries=options.train_retries)

        analyze_task = analyze_results(
            results=dsl.Collected(train_task.outputs["result"]),
            histories=dsl.Collected(train_task.outputs["history"]),
            frontier=frontier_task.outputs["frontier"],
            min_success_ratio=min_success_ratio,
            mlflow_tracking_uri=mlflow_tracking_uri,
            tracking=tracking_task.outputs["tracking"],
            gpu_hour_price=gpu_hour_price,
        )
        writes_to_mlflow(analyze_task, mlflow_secret, cache=False)  # it ends this pipeline run's parent run
        return analyze_task.outputs["report"]

    return liger_benchmark


liger_benchmark = build_pipeline()
