"""The tiny grid the component, failure-matrix and backend tests share, and prepare_grid's other arguments.

Import it as ``from tiny_grid import TINY_AXES`` (tests/ has no ``__init__.py``, so pytest puts it on
``sys.path``).
"""

from __future__ import annotations

from dataclasses import asdict

from liger_bench.cluster import ClusterOptions
from liger_bench.plan.frontier import FrontierSettings

# A small valid experiment: both variants at one batch size and length, one repeat, five steps (three warm-up).
# On a CPU the Liger run is `skipped`, so a whole run of it trains the baseline once.
TINY_AXES = {
    "use_liger": [True, False],
    "torch_compile": [False],
    "per_device_train_batch_size": [2],
    "max_seq_length": [64],
    "n_runs": 1,
    "max_steps": 5,
    "warmup_steps_to_skip": 3,
}
# prepare_grid checks the frontier search's settings: the defaults.
FRONTIER_SETTINGS = asdict(FrontierSettings())
# The prepare_grid component's parameters besides the axes.
GRID_TASK_ARGS = {
    "base_config": {},
    "max_grid_size": 256,
    "kernel_ablation": "off",
    "min_success_ratio": 0.1,
    "mlflow_tracking_uri": "",
    "frontier_search": True,
    **FRONTIER_SETTINGS,
    "gpu_hour_price": 0.0,
    **ClusterOptions().grid_scale(),
}
