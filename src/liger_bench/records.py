"""The records train_model writes and analyze_results reads: one run result, one step history.

The step record's names are declared here once: ``StepMetricsCallback`` writes them, analysis
reads them and tracking logs them.

Both are JSON files written atomically (so are the report, summary and table): a reader never sees
a half-written file presented as complete, also when the disk fills up mid-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, get_args

from liger_bench.vocabulary import RUN_STATUSES, RunStatus

TokenKind = Literal["padded", "nonpad", "trained"]
# padded: input_ids elements; nonpad: attention-mask ones; trained: tokens whose label counts in the loss.
TOKEN_KINDS: tuple[TokenKind, ...] = get_args(TokenKind)


class StepMetrics(TypedDict):
    """The numbers measured at one optimizer step; None where the device cannot measure them."""

    step_time_s: float
    tokens_per_s_padded: float
    tokens_per_s_nonpad: float
    tokens_per_s_trained: float
    peak_mem_allocated_gb: float | None
    peak_mem_reserved_gb: float | None
    mfu: float | None
    loss: float | None
    learning_rate: float | None


# The per-step numbers, in the order MLflow shows them.
STEP_METRICS: tuple[str, ...] = tuple(StepMetrics.__annotations__)


class StepRecord(StepMetrics):
    """One optimizer step as ``StepMetricsCallback`` records it: its metrics and what they count."""

    step: int
    warmup: bool
    shape: str  # padded input shape per micro-batch, "BxS", "+"-joined with gradient accumulation
    first_shape: bool  # the first step of this shape in the run
    compiled_graphs: int  # graphs torch.compile compiled during the step (torch's own counter; 0 uncompiled)
    tokens_padded: int
    tokens_nonpad: int
    tokens_trained: int
    total_tokens_padded: int
    total_tokens_nonpad: int
    total_tokens_trained: int
    energy_j: float | None  # the GPUs' energy during the step (NVML's counter, summed over ranks); None: unmeasured
    energy_unavailable: str  # why energy_j is None ("" when measured)
    ranks: NotRequired[list[dict[str, Any]]]  # what each rank measured, with several ranks


@dataclass
class RunResult:
    """Outcome of one grid point; an ``oom``, ``failed`` or ``skipped`` run is data, not an exception."""

    run_key: str
    status: RunStatus
    config: dict[str, Any]
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    liger_kernels: dict[str, int] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)
    # Seconds of each phase of the run's process, in order (liger_bench.measure.phases.PHASES).
    phases_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunResult:
        """Read back what ``to_dict`` wrote."""
        return cls(**values)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (see ``write_text_atomic``)."""
    return write_text_atomic(path, json.dumps(payload, indent=1, allow_nan=True))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file and an atomic rename.

    On any error (disk full included) the temporary file is removed and the error propagates,
    naming ``path``, so ``path`` either holds the complete document or its previous content. The
    file gets the mode ``open()`` gives a new file (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, NEW_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {path} ({err.strerror}); nothing was written there") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


NEW_FILE_MODE = _new_file_mode()


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON document."""
    with open(path) as handle:
        return json.load(handle)


@dataclass
class StepHistory:
    """The step-history artifact of a run: every step ``StepMetricsCallback`` recorded."""

    run_key: str
    warmup_steps_to_skip: int
    steps: list[StepRecord]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StepHistory:
        """Read back what ``to_dict`` wrote; a history without steps has an empty list."""
        return cls(values["run_key"], values.get("warmup_steps_to_skip", 0), list(values.get("steps") or ()))


def history_document(result: RunResult, steps: list[StepRecord]) -> dict[str, Any]:
    """The step-history artifact of a run, as JSON-serialisable dict."""
    return StepHistory(result.run_key, result.config["warmup_steps_to_skip"], steps).to_dict()
