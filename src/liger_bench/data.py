"""Datasets: load from a hub id or a local path, normalise to prompt/completion, tokenise for SFT."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALPACA_COLUMNS = ("instruction", "input", "output", "text")
RESPONSE_MARKER = "### Response:\n"
_PREAMBLE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
)
_PREAMBLE_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
)
LOCAL_DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetError(ValueError):
    """The dataset cannot be used; the message says why and what would be accepted."""


def alpaca_prompt(instruction: str, context: str = "") -> str:
    """The Stanford alpaca prompt template, up to and including ``### Response:``."""
    if context:
        return f"{_PREAMBLE_WITH_INPUT}### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n{RESPONSE_MARKER}"
    return f"{_PREAMBLE_NO_INPUT}### Instruction:\n{instruction}\n\n{RESPONSE_MARKER}"


def is_local(name: str) -> bool:
    """True when ``name`` is a path on this machine rather than a hub id."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


@contextlib.contextmanager
def hub_errors(kind: str, name: str, revision: str, error: type[ValueError]) -> Iterator[None]:
    """Turn huggingface_hub's exceptions about ``name`` into ``error`` with a message that says what to do.

    Args:
        kind: ``"model"`` or ``"dataset"``; messages name the pipeline parameters ``<kind>_name`` and
            ``<kind>_revision``.
        name: The hub id that was asked for.
        revision: The revision that was asked for ("" for the default branch).
        error: The exception class to raise (``DatasetError`` or ``ModelError``).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as err:
        hint = "HF_TOKEN is not set" if not os.environ.get("HF_TOKEN") else "the HF_TOKEN given has no access"
        raise error(
            f"{kind}_name: {name!r} is gated and {hint}; create the Kubernetes Secret named by the pipeline "
            "parameter hf_token_secret (key HF_TOKEN) with a token that has accepted its conditions"
        ) from err
    except RevisionNotFoundError as err:
        raise error(f"{kind}_revision: {revision!r} does not exist for {name!r}") from err
    except RepositoryNotFoundError as err:
        raise error(
            f"{kind}_name: {name!r} was not found on the hub at {constants.ENDPOINT} and is not a local path "
            "(a private repository also needs HF_TOKEN)"
        ) from err
    except OfflineModeIsEnabled as err:
        raise error(f"{kind}_name: {name!r} is not a local path and HF_HUB_OFFLINE is set") from err
    except HTTPError as err:
        # huggingface_hub lets the HTTP client's connection errors through unchanged.
        detail = str(err).splitlines()[0] if str(err) else ""
        raise error(
            f"{kind}_name: {name!r} is not a local path and the hub at {constants.ENDPOINT} could not be "
            f"reached or refused the request ({type(err).__name__}: {detail}); check the node's network "
            "access and HF_ENDPOINT, or give a local path"
        ) from err


def load_raw(name: str, split: str = "train", revision: str = "") -> tuple[Any, str]:
    """Load a split from a hub id or a local file/folder; return ``(dataset, resolved_revision)``.

    Hub ids go through ``datasets.load_dataset`` (``HF_TOKEN`` from the environment when set);
    the resolved commit comes from the hub's metadata. Local folders saved with ``save_to_disk``
    are read with ``load_from_disk``; other local folders and files go through ``load_dataset``.
    """
    import datasets

    if is_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise DatasetError(f"dataset_name: local path {str(path)!r} does not exist")
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            if not any(path.rglob("*.arrow")):
                # datasets saves an empty dataset as zero shards, then fails to load it with an IndexError.
                raise DatasetError(f"dataset_name: {str(path)!r} holds no rows; need at least one row")
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict) and split not in loaded:
                raise DatasetError(f"dataset_split: {split!r} is not in {str(path)!r}; accepted: {list(loaded)}")
            data = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        elif path.is_file():
            builder = LOCAL_DATA_SUFFIXES.get(path.suffix)
            if builder is None:
                raise DatasetError(
                    f"dataset_name: {str(path)!r} has suffix {path.suffix!r}; accepted: {sorted(LOCAL_DATA_SUFFIXES)}"
                )
            data = _load_local(path, split, builder, data_files=str(path))
        else:
            data = _load_local(path, split, str(path))
        return data, "local"

    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN") or None
    with hub_errors("dataset", name, revision, DatasetError):
        info = HfApi(token=token).dataset_info(name, revision=revision or None)
        data = datasets.load_dataset(name, split=split, revision=info.sha, token=token)
    return data, info.sha


def _load_local(path: Path, split: str, *args: Any, **kwargs: Any) -> Any:
    """``datasets.load_dataset(*args)`` for the local ``path``, its errors for a missing or empty split made clear."""
    import datasets

    empty = DatasetError(f"dataset_split: {split!r} of {str(path)!r} has no rows; need at least one row")
    try:
        return datasets.load_dataset(*args, split=split, **kwargs)
    except StopIteration as err:  # the JSON builder's way of saying the files are empty
        raise empty from err
    except ValueError as err:
        if str(err).startswith("Unknown split"):
            raise DatasetError(f"dataset_split: {split!r} does not exist; {err}") from err
        if "corresponds to no data" in str(err):
            raise empty from err
        raise


def to_prompt_completion(data: Any) -> tuple[Any, str]:
    """Normalise a dataset to ``prompt``/``completion`` columns; return it and the source format.

    Accepted, in order: ``prompt`` + ``completion``; alpaca's ``instruction`` (+ ``input``) +
    ``output``; a single ``text`` column (trained as plain language modelling, empty prompt).
    """
    columns = set(data.column_names)
    if len(data) == 0:
        raise DatasetError("dataset split is empty; need at least one row")
    if {"prompt", "completion"} <= columns:
        fmt = "prompt_completion"
        converted = data.select_columns(["prompt", "completion"])
    elif {"instruction", "output"} <= columns:
        fmt = "alpaca"
        has_input = "input" in columns

        def convert(row):
            return {
                "prompt": alpaca_prompt(row["instruction"], row["input"] if has_input else ""),
                "completion": row["output"],
            }

        converted = data.map(convert, remove_columns=data.column_names)
    elif "text" in columns:
        fmt = "text"
        converted = data.map(lambda row: {"prompt": "", "completion": row["text"]}, remove_columns=data.column_names)
    else:
        raise DatasetError(
            f"dataset has columns {sorted(columns)}; accepted: prompt+completion, alpaca's "
            "instruction(+input)+output, or text"
        )
    converted = converted.filter(lambda row: bool(row["completion"] and row["completion"].strip()))
    if len(converted) == 0:
        raise DatasetError("no row has a non-empty completion/output/text")
    return converted, fmt


@dataclass
class TokenizedData:
    """Tokenised training rows and what truncation did to them."""

    rows: list[dict[str, list[int]]]
    n_source_rows: int
    n_truncated: int
    n_dropped: int

    def summary(self) -> dict[str, int]:
        """Counts for the run result: rows kept, truncated to max_seq_length, dropped."""
        return {
            "n_rows": len(self.rows),
            "n_source_rows": self.n_source_rows,
            "n_truncated": self.n_truncated,
            "n_dropped_no_completion_tokens": self.n_dropped,
        }


def tokenize(data: Any, tokenizer: Any, max_seq_length: int) -> TokenizedData:
    """Tokenise prompt/completion rows; only completion tokens (and EOS) are trained.

    Rows longer than ``max_seq_length`` are truncated from the end; rows whose completion is cut
    away entirely are dropped (they would contribute no trained token).
    """
    rows, truncated, dropped = [], 0, 0
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for example in data:
        prompt_ids = tokenizer(example["prompt"])["input_ids"] if example["prompt"] else []
        completion_ids = tokenizer(example["completion"], add_special_tokens=not prompt_ids)["input_ids"] + eos
        input_ids = prompt_ids + completion_ids
        labels = [-100] * len(prompt_ids) + completion_ids
        if len(input_ids) > max_seq_length:
            truncated += 1
            input_ids, labels = input_ids[:max_seq_length], labels[:max_seq_length]
        if all(label == -100 for label in labels[1:]):
            dropped += 1
            continue
        rows.append({"input_ids": input_ids, "labels": labels})
    if not rows:
        raise DatasetError(f"no row keeps a completion token at max_seq_length={max_seq_length}; raise max_seq_length")
    return TokenizedData(rows, len(data), truncated, dropped)


def save_prepared(data: Any, directory: str | os.PathLike) -> None:
    """Save a normalised dataset so train_model loads it offline with ``load_prepared``."""
    data.save_to_disk(str(directory))


def load_prepared(directory: str | os.PathLike) -> Any:
    """Load what ``save_prepared`` wrote."""
    import datasets

    return datasets.load_from_disk(str(directory))


def prepare_dataset(name: str, split: str, revision: str, destination: str | os.PathLike) -> dict[str, Any]:
    """download_dataset's work: load, normalise, save; return the artifact metadata."""
    raw, resolved = load_raw(name, split, revision)
    prepared, fmt = to_prompt_completion(raw)
    save_prepared(prepared, destination)
    return {
        "name": name,
        "split": split,
        "revision": resolved,
        "source_format": fmt,
        "source_rows": len(raw),
        "rows": len(prepared),
    }
