"""Every model type liger-kernel patches, as a tiny random model: prepare_grid, Liger patching, training.

On CPU, for each type transformers can build as a text-only causal LM: prepare_grid accepts the
default grid (and pins the attention implementation transformers picks), Liger's patches apply
to an instance and say what they patched, and a stock-transformers run trains a few steps. The
multimodal types in liger-kernel's registry are skipped with the reason.

On a GPU (``-m gpu``), both variants train a few steps for each type, each pair in a fresh
process (Liger patches the process), and the outcome table is written, row by row, to the folder
named by ``LIGER_BENCH_ARCHITECTURES_OUT`` as ``architectures.json`` and ``architectures.md``
(commands: benchmarks/results/README.md).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
from tiny_models import text_lm_refusal, write_tiny_model

from liger_bench.measure.training import run_training
from liger_bench.plan.config import LIGER_KERNELS, TrainConfig
from liger_bench.plan.grid import GridSpec, expand_grid
from liger_bench.plan.liger import offered_kernels, resolve_kernels
from liger_bench.tasks import download_model, prepare_grid

MODEL_TYPES = sorted(MODEL_TYPE_TO_APPLY_LIGER_FN)
# Kernels liger-kernel enables by default that find nothing in the text-only model: Llama-4's
# LayerNorm patch is for its vision tower.
NOTHING_TO_PATCH = {"llama4_text": {"layer_norm"}}
OUTCOME_TABLE_ENV = "LIGER_BENCH_ARCHITECTURES_OUT"


def _grid(info: dict, model_dir, axes: dict, dataset_dir) -> list[dict]:
    """prepare_grid's work on a tiny model and the prepared embedded dataset (its rows are tokenised there)."""
    return prepare_grid(
        info, {"name": "embedded", "rows": 256}, axes, str(model_dir), str(dataset_dir), 0.0, "", True, {}, 0.0
    )


def test_every_kernel_flag_of_liger_kernel_is_a_config_field():
    """``LIGER_KERNELS`` (the ``liger_<kernel>`` fields) is the union of what liger-kernel's registry offers."""
    offered = set().union(*(offered_kernels(model_type) for model_type in MODEL_TYPES))
    assert offered == set(LIGER_KERNELS)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_prepare_grid_accepts_the_default_grid(model_type, tiny_model, prepared_dataset):
    model_dir, info = tiny_model(model_type)
    assert info["model_type"] == model_type
    spec = GridSpec()
    grid = _grid(info, model_dir, dataclasses.asdict(spec), prepared_dataset)
    assert (
        len(grid) == len(spec.use_liger) * len(spec.torch_compile) * len(spec.per_device_train_batch_size) * spec.n_runs
    )
    assert {item["attn_implementation"] for item in grid} in ({"sdpa"}, {"eager"})  # one for every run


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_liger_patches_an_instance_and_says_what_it_patched(model_type, tiny_model):
    """liger-kernel's defaults for the type are what gets patched, each kernel in at least one place."""
    from liger_bench.plan.architecture import try_architecture

    model_dir, _ = tiny_model(model_type)
    trial = try_architecture(str(model_dir), "", {})
    assert set(trial.liger_kernels) == set(offered_kernels(model_type))
    assert {kernel for kernel, count in trial.liger_kernels.items() if count} == _patched_by_default(model_type)


def _patched_by_default(model_type: str) -> set[str]:
    defaults = offered_kernels(model_type)
    return {kernel for kernel, on in defaults.items() if on} - NOTHING_TO_PATCH.get(model_type, set())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_stock_transformers_trains_a_few_steps(model_type, tiny_model, prepared_dataset):
    """A grid item as prepare_grid makes it, trained as train_model trains it, with the attention it pinned."""
    model_dir, info = tiny_model(model_type)
    axes = {
        "use_liger": [False],
        "torch_compile": [False],
        "per_device_train_batch_size": [2],
        "max_seq_length": [64],
        "n_runs": 1,
    }
    # One batch shape (2x64), so the second step is measured, not a first-shape step.
    axes.update(max_steps=2, warmup_steps_to_skip=1, base_config={"pad_to_multiple_of": 64})
    (item,) = _grid(info, model_dir, axes, prepared_dataset)
    result, steps = run_training(TrainConfig.from_dict(item), str(model_dir), str(prepared_dataset))
    assert result.status == "ok", result.reason
    assert len(steps) == 2 and all(step["loss"] > 0 for step in steps)
    assert result.metrics["attn_implementation"] == item["attn_implementation"]
    assert result.liger_kernels == {}


MULTIMODAL_TYPES = [t for t in MODEL_TYPES if text_lm_refusal(t).startswith("multimodal")]


@pytest.mark.parametrize("model_type", MULTIMODAL_TYPES)
def test_a_multimodal_type_is_refused_by_download_model_with_what_to_do(model_type, tmp_path):
    """A multimodal config with a causal-LM class (Gemma-3, Llama-4, Qwen3.5) would pass every check and
    fail only on the GPU (its sizes live in the nested text config): download_model refuses it."""
    from transformers import AutoConfig

    from liger_bench.inputs.modelio import ModelError, check_model_folder

    AutoConfig.for_model(model_type).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=rf"model_type '{model_type}' is multimodal .*; accepted: "):
        check_model_folder(tmp_path, "model_name")


def test_the_trial_leaves_the_calling_process_unpatched(tiny_model):
    """Granite's defaults patch torch's cross_entropy and Granite's classes, in the trial's own process only."""
    import torch
    from transformers.models.granite import modeling_granite

    from liger_bench.plan.architecture import try_architecture

    model_dir, _ = tiny_model("granite")
    trial = try_architecture(str(model_dir), "", {})
    assert trial.liger_kernels["cross_entropy"] == 1 and trial.liger_kernels["rms_norm"] > 0
    assert torch.nn.functional.cross_entropy.__module__ == "torch.nn.functional"
    assert modeling_granite.GraniteRMSNorm.__module__ == modeling_granite.__name__
    assert modeling_granite.apply_rotary_pos_emb.__module__ == modeling_granite.__name__


def test_kernel_flags_left_unset_stay_unset_from_base_config_to_liger_kernel():
    (item, *_) = expand_grid(GridSpec(n_runs=1, base_config={"liger_swiglu": False}))
    assert item["liger_swiglu"] is False and "liger_rope" not in item  # KFP parameters cannot carry null
    flags = TrainConfig.from_dict(item).liger_flags()
    assert flags == {"swiglu": False}
    assert resolve_kernels("phi3", flags) == {**offered_kernels("phi3"), "swiglu": False}


def _train_pair_in_a_fresh_process(grid: list[dict], model_dir: Path, dataset_dir: Path) -> dict[str, dict]:
    """Train the grid's baseline, then its Liger run, in a new interpreter: Liger patches the process."""
    code = f"""
        import json
        from liger_bench.plan.config import TrainConfig
        from liger_bench.measure.training import run_training
        from liger_bench.vocabulary import variant_of
        out = {{}}
        for item in sorted(json.loads({json.dumps(json.dumps(grid))}), key=lambda item: item["use_liger"]):
            result, steps = run_training(TrainConfig.from_dict(item), {str(model_dir)!r}, {str(dataset_dir)!r})
            out[variant_of(item["use_liger"], item["torch_compile"])] = {{
                "status": result.status, "reason": result.reason, "liger_kernels": result.liger_kernels,
                "attn_implementation": result.metrics.get("attn_implementation"),
                "losses": [step["loss"] for step in steps],
            }}
        print(json.dumps(out))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


class OutcomeTable:
    """The GPU outcome table, rewritten after every row.

    Rows already in the folder are kept (a later run replaces a model type's row), so the table
    can be made in several calls, a call cut short keeps the rows so far, and several pytest-xdist
    workers can add rows at once (each add re-reads the table under a file lock).
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder) if folder else None
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        if self.folder is None:
            self.rows = self._merged(self.rows, row)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        written = self.folder / "architectures.json"
        with open(self.folder / ".architectures.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.rows = self._merged(json.loads(written.read_text()) if written.exists() else [], row)
            written.write_text(json.dumps(self.rows, indent=1) + "\n")
            self._write_markdown()

    @staticmethod
    def _merged(rows: list[dict], row: dict) -> list[dict]:
        others = (r for r in rows if r["model_type"] != row["model_type"])
        return sorted([*others, row], key=lambda r: r["model_type"])

    def _write_markdown(self) -> None:
        lines = [
            "| model type | architecture | attention | Liger kernels patched (modules) | stock transformers | Liger "
            "| largest loss difference | reason |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            kernels = ", ".join(f"{k} ({n})" for k, n in (row.get("liger_kernels") or {}).items() if n) or "—"
            reason = row["reason"].replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {row['model_type']} | {row.get('architecture') or '—'} | {row.get('attn_implementation') or '—'} "
                f"| {kernels} | {row['baseline']} | {row['liger']} | {_percent(row.get('max_loss_rel_diff'))} "
                f"| {reason} |"
            )
        (self.folder / "architectures.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def outcome_table() -> OutcomeTable:
    """The table, written to the folder ``LIGER_BENCH_ARCHITECTURES_OUT`` names (nowhere when unset)."""
    return OutcomeTable(os.environ.get(OUTCOME_TABLE_ENV, ""))


@pytest.mark.gpu
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_both_variants_train_on_gpu(model_type, embedded_assets, prepared_dataset, tmp_path, outcome_table):
    """prepare_grid's items, trained as train_model trains them: both variants ok with the same attention,
    liger-kernel's default kernels patched; the largest per-step loss difference goes into the table."""
    from liger_bench.plan.grid import GridError

    refusal = text_lm_refusal(model_type)
    if refusal:
        outcome_table.add(model_type=model_type, baseline="not run", liger="not run", reason=refusal)
        pytest.skip(refusal)
    write_tiny_model(model_type, tmp_path / "source", embedded_assets[0])
    info = download_model(str(tmp_path / "source"), "", tmp_path / "model")
    architecture = ", ".join(info["architectures"])
    axes = {
        "use_liger": [True, False],
        "torch_compile": [False],
        "per_device_train_batch_size": [4],
        "max_seq_length": [128],
        "n_runs": 1,
    }
    try:
        steps = {"max_steps": 10, "warmup_steps_to_skip": 3}
        grid = _grid(info, tmp_path / "model", {**axes, **steps}, prepared_dataset)
        runs = _train_pair_in_a_fresh_process(grid, tmp_path / "model", prepared_dataset)
    except GridError as err:
        outcome_table.add(
            model_type=model_type,
            architecture=architecture,
            baseline="refused by prepare_grid",
            liger="refused by prepare_grid",
            reason=str(err),
        )
        raise
    except subprocess.CalledProcessError as err:
        last = (err.stderr or "").strip().splitlines()[-1:] or ["no output"]
        outcome_table.add(
            model_type=model_type,
            architecture=architecture,
            baseline="crashed",
            liger="crashed",
            reason=f"the training process exited with {err.returncode}: {last[0]}",
        )
        raise
    baseline, liger = runs["baseline"], runs["liger"]
    outcome_table.add(
        model_type=model_type,
        architecture=architecture,
        attn_implementation=baseline["attn_implementation"] or liger["attn_implementation"],
        liger_kernels=liger["liger_kernels"],
        baseline=baseline["status"],
        liger=liger["status"],
        max_loss_rel_diff=max(
            (abs(a - b) / b for a, b in zip(liger["losses"], baseline["losses"], strict=False) if b), default=None
        ),
        reason="; ".join(r for r in (baseline["reason"], liger["reason"]) if r),
    )
    assert baseline["status"] == "ok" and liger["status"] == "ok", (baseline["reason"], liger["reason"])
    assert baseline["attn_implementation"] == liger["attn_implementation"]
    assert {kernel for kernel, count in liger["liger_kernels"].items() if count} == _patched_by_default(model_type)
