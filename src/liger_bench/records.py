"""The records train_model writes and analyze_results reads: one run result, one step history.

Both are JSON files written atomically: a reader never sees a half-written file presented as
complete, also when the disk fills up mid-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("ok", "oom", "failed", "skipped")


@dataclass
class RunResult:
    """Outcome of one grid point; an ``oom``, ``failed`` or ``skipped`` run is data, not an exception."""

    run_key: str
    status: str
    config: dict[str, Any]
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    liger_kernels: dict[str, int] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunResult:
        """Read back what ``to_dict`` wrote."""
        return cls(**values)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` via a temporary file and an atomic rename.

    On any error (disk full included) the temporary file is removed and the error propagates, so
    ``path`` either holds the complete document or does not exist.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, allow_nan=True)
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


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON document."""
    with open(path) as handle:
        return json.load(handle)


def history_document(result: RunResult, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The step-history artifact of a run."""
    return {
        "run_key": result.run_key,
        "warmup_steps_to_skip": result.config["warmup_steps_to_skip"],
        "steps": steps,
    }
