"""Hand-made mutation audit of the code that computes the numbers (docs/mutation-audit.md).

Each mutant is one small, plausible bug: a textual replacement that must match exactly once. The
script applies it, runs the narrowly selected tests that should catch it, restores the file and
prints one Markdown table row. It is not part of CI (a full pass takes about ten minutes on two
cores); run it after changing the measured code or its tests:

    .venv/bin/python scripts/mutation_audit.py            # every mutant
    .venv/bin/python scripts/mutation_audit.py S1 M3      # some of them

``--tests-from DIR`` runs the same selections from another copy of tests/ (an older commit's, say:
``git archive COMMIT tests | tar -x -C DIR``) against the mutated current code.
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
    """One bug: replace ``old`` by ``new`` in ``path`` (under src/liger_bench/) and run ``tests``."""

    id: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
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


def line_of(text: str, snippet: str) -> int:
    """1-based line where ``snippet`` starts in ``text``."""
    return text[: text.index(snippet)].count("\n") + 1


def run(mutant: Mutant, tests_root: Path) -> tuple[str, str]:
    """Apply ``mutant``, run its tests (tests/ under ``tests_root``), restore the file; ``(location, outcome)``."""
    args = [str(tests_root / a) if a.startswith("tests/") else a for a in mutant.tests]
    if tests_root != ROOT:
        args = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tests_root), *args]
    path = ROOT / SRC / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.id}: the text to replace occurs {original.count(mutant.old)} times in {path}")
    location = f"{mutant.path}:{line_of(original, mutant.old)}"
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *args],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
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
    chosen = [m for m in MUTANTS if not options.ids or m.id in options.ids]
    print("| id | mutant | where | tests run | outcome |")
    print("| --- | --- | --- | --- | --- |")
    for mutant in chosen:
        location, outcome = run(mutant, options.tests_from.resolve())
        print(f"| {mutant.id} | {mutant.what} | `{location}` | `{' '.join(mutant.tests)}` | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
