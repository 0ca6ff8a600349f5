"""Hand-made mutation audit of the code that computes the numbers (docs/mutation-audit.md).

Each mutant is one small, plausible bug: a textual replacement that must match exactly once. The
script applies it, runs the narrowly selected tests that should catch it, restores the file and
prints one Markdown table row. It is not part of CI (the 42 hand-picked mutants take about ten
minutes on two cores; each of issue 23's ``INDEPENDENT`` ones runs every test file that imports its
module, up to half an hour for one that survives on a loaded machine); run it after changing the
measured code or its tests:

    .venv/bin/python scripts/mutation_audit.py            # every mutant
    .venv/bin/python scripts/mutation_audit.py S1 M3      # some of them

``--tests-from DIR`` runs the same selections from another copy of tests/ (an older commit's, say:
``git archive COMMIT tests | tar -x -C DIR``) against the mutated current code.

A mutant's tests run in two passes, the fast tests first and the ``slow`` ones only when no fast test
failed: the outcome is the same as one run of all, and a caught mutant costs no pipeline run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = "src/liger_bench/"

METRICS = ("tests/test_metrics.py",)
PRECISION = ("tests/test_training.py", "-k", "precision")
LIGER = ("tests/test_training.py", "-k", "flow or patches_every or flags_are_respected or baseline_never or refuses")
REPORT = ("tests/test_report.py",)
ANALYSIS = ("tests/test_analysis.py",)
GRID = ("tests/test_grid.py", "tests/test_failure_matrix.py", "-k", "grid and not pipeline and not model_cannot")


@dataclass(frozen=True)
class Mutant:
    """One bug: replace ``old`` by ``new`` in ``path`` (under src/liger_bench/) and run ``tests``.

    ``tests`` None: the test files that import the mutated module (``importing_tests``).
    """

    id: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...] | None
    what: str


MUTANTS = [
    # The four survivors of issue 16's audit.
    Mutant(
        "S1",
        "measure/metrics.py",
        "        self._sync()\n        self._barrier()",
        "        self._barrier()",
        METRICS,
        "no sync before the step clock stops",
    ),
    Mutant(
        "S2",
        "measure/training.py",
        "dtype = torch.bfloat16 if bf16 else torch.float32",
        "dtype = torch.float32",
        PRECISION,
        "model loaded in fp32 while the run reports bf16",
    ),
    Mutant(
        "S3",
        "plan/config.py",
        'kernel: getattr(self, f"liger_{kernel}")',
        'kernel: getattr(TrainConfig, f"liger_{kernel}")',
        LIGER,
        "liger_flags() ignores the liger_* fields (defaults: all kernels on)",
    ),
    Mutant(
        "S4",
        "analyse/narrative.py",
        'chosen.sort_values(["batch_size", "seq_len"])',
        'chosen.sort_values(["seq_len", "batch_size"])',
        REPORT,
        "headline cell ordered by sequence length first",
    ),
    Mutant(
        "S5",
        "plan/grid.py",
        "run_key(variant_of(liger, compiled), batch_size, seq_len, repeat)",
        "run_key(variant_of(liger, compiled), batch_size, seq_lengths[0], repeat)",
        GRID,
        "run keys collide across sequence lengths",
    ),
    # Variable-length measurement (issue 10): first-shape steps and the steady-state verdict.
    Mutant(
        "V1",
        "measure/metrics.py",
        'return not step["warmup"] and not step.get("first_shape", False)',
        'return not step["warmup"]',
        ("tests/test_steady_state.py", "tests/test_metrics.py"),
        "first-shape steps counted in the aggregates",
    ),
    Mutant(
        "V2",
        "analyse/analysis.py",
        'candidates = group[(group["outcome"] == "ok") & (group["steady_state"] != "unsteady")]',
        'candidates = group[group["outcome"] == "ok"]',
        ("tests/test_steady_state.py", "tests/test_analysis.py", "tests/test_report.py"),
        "an unsteady cell can be recommended",
    ),
    Mutant(
        "V3",
        "measure/metrics.py",
        '    if abs(drift) <= STEADY_DRIFT_TOLERANCE:\n        out["steady_state"] = "steady"',
        '    if True:\n        out["steady_state"] = "steady"',
        ("tests/test_steady_state.py",),
        "every run judged steady",
    ),
    # metrics.py: the step timer and the aggregates.
    Mutant(
        "M1",
        "measure/metrics.py",
        "        self._sync()\n        if torch.cuda.is_available():\n            torch.cuda.reset",
        "        if torch.cuda.is_available():\n            torch.cuda.reset",
        METRICS,
        "no sync before the step clock starts (earlier work billed to the step)",
    ),
    Mutant(
        "M2",
        "measure/metrics.py",
        "        self._sync()\n        self._barrier()\n"
        '        local: dict[str, Any] = {"step_time_s": self._clock() - self._start,',
        "        self._barrier()\n"
        '        local: dict[str, Any] = {"step_time_s": (self._clock(), self._sync())[0] - self._start,',
        METRICS,
        "clock read before the end-of-step sync",
    ),
    Mutant(
        "M3",
        "measure/metrics.py",
        "        torch.cuda.synchronize()",
        "        pass",
        METRICS,
        "synchronize_cuda() does nothing",
    ),
    Mutant(
        "M4",
        "measure/metrics.py",
        'return not step["warmup"] and not step.get("first_shape", False)',
        'return not step.get("first_shape", False)',
        METRICS,
        "warm-up steps counted in the aggregates",
    ),
    Mutant(
        "M5",
        "measure/metrics.py",
        "warmup=step <= self.warmup_steps_to_skip",
        "warmup=step < self.warmup_steps_to_skip",
        METRICS,
        "last warm-up step labelled as measured",
    ),
    Mutant(
        "M6",
        "measure/metrics.py",
        'out[f"tokens_per_s_{kind}"] = tokens / total_time if total_time > 0 else None',
        'out[f"tokens_per_s_{kind}"] = _stat([s[f"tokens_per_s_{kind}"] for s in measured], statistics.fmean)',
        METRICS,
        "run throughput is the mean of per-step rates, not tokens over time",
    ),
    Mutant(
        "M7",
        "measure/metrics.py",
        "(labels[:, 1:] != -100)",
        "(labels != -100)",
        METRICS,
        "trained tokens ignore the label shift",
    ),
    Mutant(
        "M8",
        "measure/metrics.py",
        "nonpad = int(mask.sum().item()) if mask is not None else padded",
        "nonpad = padded",
        METRICS,
        "padding counted as real tokens",
    ),
    Mutant(
        "M9",
        "measure/metrics.py",
        'per_token(inputs["input_ids"].shape[1])',
        'per_token(inputs["input_ids"].shape[0])',
        METRICS,
        "MFU at the batch size instead of the padded length",
    ),
    Mutant(
        "M10",
        "measure/flops.py",
        "return 6.0 * n_params_non_embedding",
        "return 2.0 * n_params_non_embedding",
        METRICS,
        "forward-only FLOPs (2N instead of 6N)",
    ),
    Mutant(
        "M11",
        "measure/metrics.py",
        "statistics.pstdev(times) / statistics.fmean(times)",
        "statistics.pstdev(times) / statistics.median(times)",
        METRICS,
        "step-time CV over the median",
    ),
    Mutant(
        "M12",
        "measure/metrics.py",
        "out[key] = max(values) if values else None",
        "out[key] = values[-1] if values else None",
        METRICS + ANALYSIS,
        "peak memory of the last step, not the peak of all steps",
    ),
    Mutant(
        "M13",
        "measure/training.py",
        "total += head.weight.numel()",
        "total += 0",
        METRICS,
        "a tied LM head left out of the FLOPs",
    ),
    # training.py: precision and the variant.
    Mutant(
        "T1",
        "measure/training.py",
        "model = load_model(model_dir, bf16, config.attn_implementation)",
        "model = load_model(model_dir, False, config.attn_implementation)",
        PRECISION,
        "_train loads fp32 whatever was decided",
    ),
    Mutant(
        "T2",
        "plan/arguments.py",
        "        bf16=bf16,\n",
        "        bf16=False,\n",
        PRECISION,
        "Trainer arguments never bf16",
    ),
    Mutant(
        "T3",
        "measure/training.py",
        '    if config.precision == "fp32":\n        return False\n',
        "",
        PRECISION,
        "precision='fp32' ignored on a bf16 GPU",
    ),
    Mutant(
        "T4",
        "measure/training.py",
        "return apply_liger(model, config.liger_flags())",
        "return apply_liger(model, TrainConfig().liger_flags())",
        LIGER,
        "run_training applies the default flags, not the run's",
    ),
    Mutant(
        "T5",
        "measure/training.py",
        "    if any(patched_kernels(model).values()):\n",
        "    if False:\n",
        LIGER,
        "baseline contamination guard off",
    ),
    # liger.py: what was patched.
    Mutant(
        "L1",
        "plan/liger.py",
        '"swiglu": ("SwiGLU", "LigerExperts", "LigerBlockSparseTop2MLP"),',
        '"swiglu": ("LigerSwiGLUMLP",),',
        LIGER,
        "SwiGLU count misses Phi-3's own Liger MLP class",
    ),
    Mutant(
        "L2",
        "plan/liger.py",
        "missing = sorted(k for k, on in flags.items() if on and not applied[k])",
        "missing = []",
        LIGER,
        "an enabled kernel that patched nothing goes unreported",
    ),
    # analysis.py: gains, intervals, frontier, parity.
    Mutant(
        "A1",
        "analyse/analysis.py",
        'gain = group["tokens_per_s_nonpad"] / group["tokens_per_s_nonpad_against"] - 1.0',
        'gain = group["tokens_per_s_nonpad_against"] / group["tokens_per_s_nonpad"] - 1.0',
        ANALYSIS,
        "gain computed the wrong way round",
    ),
    Mutant(
        "A2",
        "analyse/intervals.py",
        "half = t_quantile_975(len(finite) - 1)",
        "half = t_quantile_975(len(finite))",
        ANALYSIS,
        "CI with n instead of n-1 degrees of freedom",
    ),
    Mutant(
        "A3",
        "analyse/analysis.py",
        'ok[ok["variant"] == against], on=[*PAIR, "repeat"]',
        'ok[ok["variant"] == against], on=[*PAIR]',
        ANALYSIS,
        "pairs not matched by repeat",
    ),
    Mutant(
        "A4",
        "analyse/analysis.py",
        'out["passed"] = (out["max_rel_diff"] <= tolerance)',
        'out["passed"] = (out["max_rel_diff"] <= 2 * tolerance)',
        ANALYSIS,
        "parity tolerance doubled",
    ),
    Mutant(
        "A5",
        "analyse/runtables.py",
        '"measured": is_measured(step)}',
        '"measured": True}',
        ANALYSIS,
        "parity compares warm-up steps",
    ),
    Mutant(
        "A6",
        "analyse/analysis.py",
        '"smallest_oom_batch": oom.min() if len(oom) else pd.NA',
        '"smallest_oom_batch": oom.max() if len(oom) else pd.NA',
        ANALYSIS,
        "OOM frontier at the largest OOM",
    ),
    Mutant(
        "A7",
        "analyse/analysis.py",
        '    if (statuses == "ok").any():\n        return "partial"\n',
        "",
        ANALYSIS + REPORT,
        "a cell with some ok repeats classified by its failures",
    ),
    Mutant(
        "A8",
        "analyse/analysis.py",
        'row["peak_mem_reserved_gb"] = ok["peak_mem_reserved_gb"].max()',
        'row["peak_mem_reserved_gb"] = ok["peak_mem_reserved_gb"].min()',
        ANALYSIS,
        "cell memory is the lowest repeat's peak",
    ),
    # report.py: the headline.
    Mutant(
        "R1",
        "analyse/analysis.py",
        'candidates = group[(group["outcome"] == "ok") & (group["steady_state"] != "unsteady")]',
        'candidates = group[group["n_ok"] > 0]',
        ("tests/test_analysis.py", "tests/test_report.py"),
        "a failed or partly failed cell can be recommended",
    ),
    Mutant(
        "R2",
        "analyse/analysis.py",
        "leanest = (",
        "leanest = fastest if True else (",
        ("tests/test_analysis.py",),
        "the leanest is not the variant with the smallest peak memory",
    ),
    Mutant(
        "R3",
        "analyse/narrative.py",
        'batch, seq = beyond.sort_values(["batch_size", "seq_len"]).iloc[-1][["batch_size", "seq_len"]]',
        'batch, seq = beyond.sort_values(["batch_size", "seq_len"]).iloc[0][["batch_size", "seq_len"]]',
        REPORT,
        "frontier phrase names the smallest batch only a variant trained",
    ),
    # grid.py.
    Mutant(
        "G1",
        "plan/grid.py",
        'return f"{variant}-bs{batch_size}-seq{seq_len}-r{repeat}"',
        'return f"{variant}-bs{batch_size}-r{repeat}"',
        GRID,
        "run key without the sequence length",
    ),
    Mutant("G2", "plan/grid.py", "            shared,\n", "            TrainConfig(),\n", GRID, "base_config dropped"),
    Mutant(
        "G3",
        "plan/grid.py",
        "        for repeat, seq_len, batch_size, compiled, liger in points\n",
        "        for seq_len, repeat, batch_size, compiled, liger in points\n",
        GRID,
        "grid order swaps repeats and sequence lengths",
    ),
]


# Issue 23's independent audit: 30 bugs written from the source modules alone by a helper that had not read
# the tests. Their tests are not chosen by hand: ``tests=None`` runs every test file that imports the
# mutated module (``importing_tests``).
INDEPENDENT = [
    Mutant(
        "I1",
        "measure/metrics.py",
        "statistics.pstdev(times) / statistics.fmean(times)",
        "statistics.stdev(times) / statistics.fmean(times)",
        None,
        "step-time CV with the sample, not the population, standard deviation",
    ),
    Mutant(
        "I2",
        "measure/metrics.py",
        'values = [s[key] for s in steps if not s["warmup"] and s.get(key) is not None]',
        "values = [s[key] for s in measured if s.get(key) is not None]",
        None,
        "peak memory over the measured steps only (first-shape steps' peaks dropped)",
    ),
    Mutant(
        "I3",
        "measure/metrics.py",
        'out["steps_needed"] = measured[start]["step"] - 1 + len(measured)',
        'out["steps_needed"] = measured[start]["step"] + len(measured)',
        None,
        "steps_needed one step too many",
    ),
    Mutant(
        "I4",
        "measure/metrics.py",
        "(self.peak_tflops * 1e12 * len(ranks))",
        "(self.peak_tflops * 1e12)",
        None,
        "MFU of a sharded step over one GPU's peak, not all ranks' peaks",
    ),
    Mutant(
        "I5",
        "measure/flops.py",
        "+ 12.0 * n_layers * hidden_size * seq_len",
        "+ 6.0 * n_layers * hidden_size * seq_len",
        None,
        "attention FLOPs halved (a causal discount the docstring rules out)",
    ),
    Mutant(
        "I6",
        "measure/flops.py",
        '    ("H100 PCIe", 756.0),\n    ("H100 NVL", 835.0),\n    ("H100", 989.0),\n',
        '    ("H100", 989.0),\n    ("H100 PCIe", 756.0),\n    ("H100 NVL", 835.0),\n',
        None,
        "the generic H100 entry listed before H100 PCIe and NVL (their peak taken as 989)",
    ),
    Mutant(
        "I7",
        "analyse/analysis.py",
        "max(compile_time_s, 0.0) / (step_time_s * gain)",
        "max(compile_time_s, 0.0) / step_time_s * gain",
        None,
        "payback steps: compile time / step time × gain (missing parentheses)",
    ),
    Mutant(
        "I8",
        "analyse/analysis.py",
        'ok["drift"].loc[ok["drift"].abs().idxmax()]',
        'ok["drift"].loc[ok["drift"].abs().idxmin()]',
        None,
        "cell drift is the repeat with the smallest drift, not the largest",
    ),
    Mutant(
        "I9",
        "analyse/analysis.py",
        'row["tokens_per_s_nonpad_per_gpu"] = row["tokens_per_s_nonpad"] / row["gpus"]',
        'row["tokens_per_s_nonpad_per_gpu"] = row["tokens_per_s_padded"] / row["gpus"]',
        None,
        "cell tokens/s per GPU from the padded rate",
    ),
    Mutant(
        "I10",
        "analyse/runtables.py",
        "isinstance(value, (int, float)) and not isinstance(value, bool)",
        "isinstance(value, float) and not isinstance(value, bool)",
        None,
        "integer aggregates (steps_needed, measured steps, recompiles, ...) read as missing",
    ),
    Mutant(
        "I11",
        "analyse/runtables.py",
        '    row["gpus"] = coerce("gpus_per_run", config.get("gpus_per_run", 1), int) * coerce(\n'
        '        "nodes_per_run", config.get("nodes_per_run", 1), int\n'
        "    )\n",
        '    row["gpus"] = coerce("gpus_per_run", config.get("gpus_per_run", 1), int)\n',
        None,
        "a run's GPUs ignore nodes_per_run",
    ),
    Mutant(
        "I12",
        "analyse/intervals.py",
        "sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)",
        "sum((v - mean) ** 2 for v in finite) / len(finite)",
        None,
        "CI from the population standard deviation",
    ),
    Mutant(
        "I13",
        "analyse/intervals.py",
        "half = t_quantile_975(len(finite) - 1) * sd / math.sqrt(len(finite))",
        "half = t_quantile_975(len(finite) - 1) * sd",
        None,
        "CI half-width not divided by sqrt(n)",
    ),
    Mutant(
        "I14",
        "analyse/narrative.py",
        "_gain_row(analysis, row.fastest, BASELINE, row.batch_size, row.seq_len)",
        "_gain_row(analysis, row.fastest, BASELINE, row.seq_len, row.batch_size)",
        None,
        "recommendation looks the gain up with batch and seq swapped",
    ),
    Mutant(
        "I15",
        "analyse/narrative.py",
        'needed = cells["steps_needed"].max()',
        'needed = cells["steps_needed"].min()',
        None,
        "headline's steps needed: the least any unsteady cell needs",
    ),
    Mutant(
        "I16",
        "analyse/narrative.py",
        "int(ok['n_truncated'].max())",
        "int(ok['n_truncated'].sum())",
        None,
        "truncation caveat sums the runs' truncated rows",
    ),
    Mutant(
        "I17",
        "render/tables.py",
        'Column("max_rel_diff", "max rel. loss diff %", percent_of(2))',
        'Column("max_rel_diff", "max rel. loss diff %", digits(2))',
        None,
        "parity column shows the fraction under a % header",
    ),
    Mutant(
        "I18",
        "render/tables.py",
        '_PER_GPU_RATE = Column("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", digits(0))',
        '_PER_GPU_RATE = Column("tokens_per_s_nonpad", "tokens/s non-pad per GPU", digits(0))',
        None,
        "per-GPU column shows the whole run's rate",
    ),
    Mutant(
        "I19",
        "plan/grid.py",
        "if max_steps <= warmup:",
        "if max_steps < warmup:",
        None,
        "max_steps equal to warmup_steps_to_skip accepted (no measured step)",
    ),
    Mutant(
        "I20",
        "plan/grid.py",
        '"n_runs": 1 + max(item["repeat"] for item in grid)',
        '"n_runs": max(item["repeat"] for item in grid)',
        None,
        "described n_runs one short",
    ),
    Mutant(
        "I21",
        "plan/grid.py",
        'longest = max(item["max_seq_length"] for item in items)',
        'longest = min(item["max_seq_length"] for item in items)',
        None,
        "context-length check against the shortest max_seq_length",
    ),
    Mutant(
        "I22",
        "plan/validation.py",
        "rows = n_rows // config.world_size",
        "rows = n_rows",
        None,
        "rows check ignores the split between ranks",
    ),
    Mutant(
        "I23",
        "plan/validation.py",
        "if value >= longest_row)",
        "if value > longest_row)",
        None,
        "a max_seq_length equal to the longest row counted as truncating",
    ),
    Mutant(
        "I24",
        "measure/supervisor.py",
        "oom_kill_count() > oom_kills_before and child.returncode == -signal.SIGKILL",
        "oom_kill_count() > oom_kills_before or child.returncode == -signal.SIGKILL",
        None,
        "any SIGKILL (or any OOM kill elsewhere) recorded as oom",
    ),
    Mutant(
        "I25",
        "measure/supervisor.py",
        "for line in reversed(stderr_tail) if line.strip()",
        "for line in stderr_tail if line.strip()",
        None,
        "crash reason quotes the first stderr line, not the last",
    ),
    Mutant(
        "I26",
        "tracking.py",
        '"diverged": "FAILED"}',
        '"diverged": "FINISHED"}',
        None,
        "a diverged child run FINISHED in MLflow",
    ),
    Mutant(
        "I27",
        "tracking.py",
        "(SUMMARY_PREFIX + name, value, timestamp, 0)",
        "(name, value, timestamp, 0)",
        None,
        "run aggregates logged without the summary/ prefix",
    ),
    Mutant(
        "I28",
        "measure/trainer.py",
        "callbacks=[step_metrics, *callbacks],",
        "callbacks=[*callbacks, step_metrics],",
        None,
        "step stream runs before the step's loss is attached",
    ),
    Mutant(
        "I29",
        "measure/trainer.py",
        "pad_to_multiple_of=config.pad_to_multiple_of if config.pad_to_multiple_of > 1 else None,",
        "pad_to_multiple_of=None,",
        None,
        "pad_to_multiple_of ignored by the collator",
    ),
    Mutant(
        "I30",
        "measure/distributed.py",
        '"activation_checkpointing": gradient_checkpointing,',
        '"activation_checkpointing": False,',
        None,
        "sharded runs never checkpoint activations",
    ),
]


def line_of(text: str, snippet: str) -> int:
    """1-based line where ``snippet`` starts in ``text``."""
    return text[: text.index(snippet)].count("\n") + 1


def _imports(text: str, module_path: str) -> bool:
    """Whether ``text`` imports ``module_path`` (e.g. ``plan/grid.py``), by a plain text match.

    It names ``liger_bench.<stage>.<module>`` (``liger_bench.<module>`` for a top-level module), or
    has ``from liger_bench.<stage> import`` with the module among the imported names.
    """
    *package, module = module_path.removesuffix(".py").split("/")
    parent = ".".join(["liger_bench", *package])
    if re.search(rf"\b{re.escape(parent)}\.{module}\b", text):
        return True
    from_import = rf"^\s*from\s+{re.escape(parent)}\s+import\s+(\([^)]*\)|[^\n]*)"
    return any(module in re.findall(r"\w+", names) for names in re.findall(from_import, text, flags=re.M))


def importing_tests(module_path: str, tests_root: Path) -> tuple[str, ...]:
    """The test files under ``tests_root``/tests that import ``module_path``: a mechanical scan.

    The audit's selection so owes nothing to a reading of the tests. A module no test file imports
    is selected through the modules of the package that import it: the tests of each of those.
    Smallest file first: pytest stops at the first failure (``-x``), so a unit test that catches the
    mutant need not wait for the local pipeline runs of ``test_failure_matrix.py``; the outcome is the same.
    """
    test_files = sorted((tests_root / "tests").glob("test_*.py"))
    found = [f for f in test_files if _imports(f.read_text(), module_path)]
    if not found:
        importers = [
            source.relative_to(ROOT / SRC).as_posix()
            for source in sorted((ROOT / SRC).rglob("*.py"))
            if _imports(source.read_text(), module_path)
        ]
        found = [f for f in test_files if any(_imports(f.read_text(), importer) for importer in importers)]
    return tuple(f.relative_to(tests_root).as_posix() for f in sorted(found, key=lambda f: f.stat().st_size))


def _pytest(args: list[str], marker: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "-m", marker, *args],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def run(mutant: Mutant, tests: tuple[str, ...], tests_root: Path) -> tuple[str, str]:
    """Apply ``mutant``, run ``tests`` (tests/ under ``tests_root``), restore the file; ``(location, outcome)``."""
    args = [str(tests_root / a) if a.startswith("tests/") else a for a in tests]
    if tests_root != ROOT:
        args = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tests_root), *args]
    path = ROOT / SRC / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.id}: the text to replace occurs {original.count(mutant.old)} times in {path}")
    location = f"{mutant.path}:{line_of(original, mutant.old)}"
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        out = _pytest(args, "not slow")
        fast_selected = out.returncode != 5
        if out.returncode in (0, 5):
            out = _pytest(args, "slow")
            if out.returncode == 5 and fast_selected:
                out.returncode = 0
    finally:
        path.write_text(original)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out.stdout, flags=re.M)
    if out.returncode == 0:
        return location, "survived"
    if out.returncode == 5:
        return location, "survived (no test selected)"
    if out.returncode == 1 and failed:
        return location, "caught by " + ", ".join(f"`{name.split('::')[-1]}`" for name in failed)
    return location, f"error (pytest exit {out.returncode}): {out.stdout[-300:]!r}"


def main() -> None:
    """Print one Markdown row per mutant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--tests-from", type=Path, default=ROOT, help="folder holding the tests/ to run")
    options = parser.parse_args()
    unknown = sorted(set(options.ids) - {m.id for m in MUTANTS + INDEPENDENT})
    if unknown:
        parser.error(f"unknown mutant ids {unknown}")
    chosen = [m for m in MUTANTS + INDEPENDENT if not options.ids or m.id in options.ids]
    tests_root = options.tests_from.resolve()
    print("| id | mutant | where | tests run | outcome |")
    print("| --- | --- | --- | --- | --- |")
    for mutant in chosen:
        tests = mutant.tests if mutant.tests is not None else importing_tests(mutant.path, tests_root)
        location, outcome = run(mutant, tests, tests_root)
        print(f"| {mutant.id} | {mutant.what} | `{location}` | `{' '.join(tests)}` | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
