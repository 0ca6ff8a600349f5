"""Datasets: load from a hub id or a local path, check and normalise to prompt/completion, tokenise for SFT.

One room although it is long: the row formats accepted (text, alpaca, chat messages), the checks of
their values and their tokenisation are one definition of a row; split, a format added on one side
would be missed by the other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liger_bench.inputs.hub import from_hub, hub_token, is_local
from liger_bench.inputs.localfiles import check_revision, json_line_values, text_file_problem

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


def load_raw(name: str, split: str = "train", revision: str = "", network_retries: int = 0) -> tuple[Any, str]:
    """Load a split from a hub id or a local file/folder; return ``(dataset, resolved_revision)``.

    Hub ids go through ``datasets.load_dataset`` (``HF_TOKEN`` from the environment when set);
    the resolved commit comes from the hub's metadata, and network errors are retried
    ``network_retries`` times. Local folders saved with ``save_to_disk`` are read with
    ``load_from_disk``; other local folders and files go through ``load_dataset``. A local path's
    revision is its content hash (``localfiles.content_revision``); a ``revision`` given for it must match.
    """
    import datasets

    if is_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise DatasetError(f"dataset_name: local path {str(path)!r} does not exist")
        try:
            resolved = check_revision(path, revision, "dataset_revision")
        except ValueError as err:
            raise DatasetError(str(err)) from err
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return _load_saved(path, split), resolved
        if path.is_file() and path.suffix not in LOCAL_DATA_SUFFIXES:
            raise DatasetError(
                f"dataset_name: {str(path)!r} has suffix {path.suffix!r}; accepted: {sorted(LOCAL_DATA_SUFFIXES)}"
            )
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in LOCAL_DATA_SUFFIXES)
        if not files:
            raise DatasetError(
                f"dataset_name: the folder {str(path)!r} holds no data file; accepted: {sorted(LOCAL_DATA_SUFFIXES)} "
                "files or a folder saved with datasets' save_to_disk"
            )
        for file in files:
            problem = text_file_problem(file) if file.suffix != ".parquet" else ""
            if problem:
                raise DatasetError(f"dataset_name: {str(file)!r}: {problem}")
        if path.is_file():
            return _load_local(path, split, LOCAL_DATA_SUFFIXES[path.suffix], data_files=str(path)), resolved
        return _load_local(path, split, str(path)), resolved

    from huggingface_hub import HfApi

    token = hub_token()

    def load() -> tuple[Any, str]:
        info = HfApi(token=token).dataset_info(name, revision=revision or None)
        return datasets.load_dataset(name, split=split, revision=info.sha, token=token), info.sha

    return from_hub(load, "dataset", name, revision, DatasetError, network_retries)


def _load_saved(path: Path, split: str) -> Any:
    """A dataset saved with ``save_to_disk``: a DatasetDict's ``split``, or a single dataset of that split."""
    import datasets

    if not any(path.rglob("*.arrow")):
        # datasets saves an empty dataset as zero shards, then fails to load it with an IndexError.
        raise DatasetError(f"dataset_name: {str(path)!r} holds no rows; need at least one row")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - any unreadable saved dataset is the user's file, named here
        problem = _first_line(err)
        raise DatasetError(f"dataset_name: {str(path)!r} cannot be read as a saved dataset: {problem}") from err
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DatasetError(f"dataset_split: {split!r} is not in {str(path)!r}; accepted: {list(loaded)}")
        return loaded[split]
    # A single saved dataset knows its split when it was cut from one; otherwise only the default fits.
    own_split = str(loaded.split) if loaded.split is not None else "train"
    if split != own_split:
        raise DatasetError(
            f"dataset_split: {split!r} does not fit {str(path)!r}, a single saved dataset of split {own_split!r} "
            f"(no other split); accepted: {own_split!r}, or save a DatasetDict with the splits"
        )
    return loaded


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _load_local(path: Path, split: str, *args: Any, **kwargs: Any) -> Any:
    """``datasets.load_dataset(*args)`` for the local ``path``; its errors name ``path``, the user's own."""
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
        raise DatasetError(f"dataset_name: {str(path)!r} cannot be read: {_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - a parse error of the user's file, named with the user's path
        raise DatasetError(f"dataset_name: {str(path)!r} cannot be read: {_first_line(err)}") from err


# What each supported column holds, for the messages that refuse a value.
TEXT = "text (a JSON string)"
CHAT = 'chat messages, a list of {"role": ..., "content": ...} with string values'


def to_prompt_completion(data: Any, source: str) -> tuple[Any, str]:
    """Normalise a dataset to ``prompt``/``completion`` columns; return it and the source format.

    Accepted, in order: ``prompt`` + ``completion`` as text, or both as chat messages (trl's
    conversational prompt-completion); ``messages`` (trl's conversational language modelling: every
    token is trained); alpaca's ``instruction`` (+ ``input``) + ``output``; a single ``text`` column
    (plain language modelling, empty prompt). Chat rows stay messages here: the model's chat
    template renders them when they are tokenised (``tokenize``), as trl's SFTTrainer does.

    Every value is checked where it is read: a number, a mapping or a null where text (or messages)
    belongs is refused with ``source``, the row and the accepted forms. A null ``input`` is no input;
    a null completion, output or text is an empty one; rows with an empty completion are dropped.
    """
    import datasets

    columns = set(data.column_names)
    if len(data) == 0:
        raise DatasetError("dataset split is empty; need at least one row")
    if {"prompt", "completion"} <= columns:
        lists = (datasets.List, datasets.LargeList)
        chat = any(isinstance(data.features[name], lists) for name in ("prompt", "completion"))
        fmt = "chat_prompt_completion" if chat else "prompt_completion"
        _check_values(data, source, {"prompt": False, "completion": True}, chat)
        converted = data.select_columns(["prompt", "completion"])
    elif "messages" in columns:
        fmt = "chat_messages"
        _check_values(data, source, {"messages": False}, chat=True)
        features = data.features["messages"]
        converted = data.map(
            lambda row: {"prompt": [], "completion": row["messages"]},
            remove_columns=data.column_names,
            features=datasets.Features({"prompt": features, "completion": features}),
        )
    elif {"instruction", "output"} <= columns:
        fmt = "alpaca"
        has_input = "input" in columns
        _check_values(data, source, {"instruction": False, "output": True, **({"input": True} if has_input else {})})

        def convert(row):
            return {
                "prompt": alpaca_prompt(row["instruction"], (row["input"] or "") if has_input else ""),
                "completion": row["output"] or "",
            }

        converted = data.map(convert, remove_columns=data.column_names)
    elif "text" in columns:
        fmt = "text"
        _check_values(data, source, {"text": True})
        converted = data.map(
            lambda row: {"prompt": "", "completion": row["text"] or ""}, remove_columns=data.column_names
        )
    else:
        raise DatasetError(
            f"dataset has columns {sorted(columns)}; accepted: prompt+completion (text or chat messages), messages "
            "(chat), alpaca's instruction(+input)+output, or text"
        )
    converted = converted.filter(lambda row: _has_text(row["completion"]))
    if len(converted) == 0:
        raise DatasetError("no row has a non-empty completion/output/text")
    return converted, fmt


def _has_text(completion: str | list | None) -> bool:
    if isinstance(completion, list):
        return any(_has_text(message["content"]) for message in completion)
    return bool(completion and completion.strip())


def _check_values(data: Any, source: str, nullable: dict[str, bool], chat: bool = False) -> None:
    """Raise ``DatasetError`` at the first value of ``nullable``'s columns that is not of the accepted form.

    Args:
        data: The loaded split.
        source: The dataset as the user named it.
        nullable: Column name to whether a null there is accepted (as an empty value).
        chat: Whether the columns must hold chat messages rather than text.
    """
    accepted = CHAT if chat else TEXT
    for column, may_be_null in nullable.items():
        for where, value in _column_values(data, column, source, chat):
            if value is None:
                if may_be_null:
                    continue
                problem = "is null"
            else:
                problem = _chat_problem(value) if chat else ("" if isinstance(value, str) else "is not text")
            if problem:
                if not chat and isinstance(value, list):
                    accepted += f"; chat messages are accepted in prompt+completion or messages, not in {column}"
                nulls = [name for name, ok in nullable.items() if ok]
                null_note = f"; a null is accepted only in {nulls} (read as empty)" if nulls else ""
                raise DatasetError(
                    f"dataset_name: {source!r}: {where}: {column} {problem}: {_shown(value)}; "
                    f"accepted: {accepted}{null_note}"
                )


def _column_values(data: Any, column: str, source: str, chat: bool) -> list[tuple[str, Any]]:
    """``(where, value)`` of the values of ``column`` to check: ``row N`` of the split, or ``line N`` as written.

    Where text belongs, a column that datasets typed as text holds only text and nulls: only its
    nulls are returned, found by arrow without reading the text (200,000 rows: milliseconds, not seconds).
    ``chat``: the column must hold messages, so every value is returned.
    datasets' JSON builder reads a column of mixed JSON types (text and numbers) as JSON text and
    then decodes a string such as "0" as the number 0; such a column of local JSON lines is read
    from the files themselves, so the message quotes the value and line the user wrote.
    """
    import datasets
    import pyarrow.compute

    feature = data.features[column]
    if not chat and isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        nulls = pyarrow.compute.indices_nonzero(pyarrow.compute.is_null(data.with_format("arrow")[column]))
        return [(f"row {index + 1}", None) for index in nulls.to_pylist()]
    if isinstance(feature, datasets.Json) and is_local(source):
        written = json_line_values(Path(source).expanduser(), column)
        if written:
            return written
    return [(f"row {row}", value) for row, value in enumerate(data[column], start=1)]


def _chat_problem(value: Any) -> str:
    if not isinstance(value, list):
        return "is not a list of chat messages"
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"has message {index} without a string role"
        if not isinstance(message.get("content"), str):
            return f"has message {index} whose content is not text"
    return ""


def _shown(value: Any) -> str:
    """``value`` as the user wrote it (JSON), its Python type named, cut to a readable length."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{text[:80]}{' ...' if len(text) > 80 else ''} ({type(value).__name__})"


@dataclass
class TokenizedData:
    """The tokenised rows one run trains on, and what truncation did to them."""

    rows: list[dict[str, list[int]]]
    n_source_rows: int
    n_truncated: int
    n_dropped: int

    def summary(self) -> dict[str, int]:
        """Counts for the run result: rows trained on, rows in the dataset, truncated, dropped."""
        return {
            "n_rows": len(self.rows),
            "n_source_rows": self.n_source_rows,
            "n_truncated": self.n_truncated,
            "n_dropped_no_completion_tokens": self.n_dropped,
        }


def tokenize(data: Any, tokenizer: Any, max_seq_length: int, sequences: int, packing: bool, seed: int) -> TokenizedData:
    """Tokenise the rows one run trains on; only completion tokens (and EOS) are trained.

    The run needs ``sequences`` training sequences (``TrainConfig.sequences_per_run``): that many rows,
    or with ``packing`` that many times ``max_seq_length`` tokens. Rows are taken in the order of a
    shuffle by ``seed`` and tokenised in chunks until they suffice (the whole dataset when they never
    do: the Trainer then repeats it in epochs), so a run's start does not grow with the dataset, and
    runs that share the seed and these arguments (a cell's variants) train the same rows.

    Rows longer than ``max_seq_length`` are truncated from the end; rows whose completion is cut
    away entirely are dropped (they would contribute no trained token). Chat rows are rendered by the
    tokenizer's chat template as trl's SFTTrainer renders them.
    """
    import numpy

    chat = isinstance(data[0]["completion"], list)
    if chat and not tokenizer.chat_template:
        raise DatasetError(
            "the dataset holds chat messages, but the model's tokenizer has no chat template to render them; "
            "accepted: a model whose tokenizer has one (e.g. an instruct model), or the conversations as "
            "prompt/completion text"
        )
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    order = numpy.random.default_rng(seed).permutation(len(data))
    tokens_needed = sequences * max_seq_length if packing else 0
    rows, truncated, dropped, tokens, start, chunk = [], 0, 0, 0, 0, max(sequences, 64)
    while start < len(order) and (len(rows) < sequences or tokens < tokens_needed):
        batch = data[order[start : start + chunk].tolist()]
        start, chunk = start + chunk, chunk * 2
        for prompt, completion in zip(batch["prompt"], batch["completion"], strict=True):
            prompt_ids, completion_ids = _token_ids(tokenizer, prompt, completion, eos)
            input_ids = prompt_ids + completion_ids
            labels = [-100] * len(prompt_ids) + completion_ids
            if len(input_ids) > max_seq_length:
                truncated += 1
                input_ids, labels = input_ids[:max_seq_length], labels[:max_seq_length]
            if all(label == -100 for label in labels[1:]):
                dropped += 1
                continue
            rows.append({"input_ids": input_ids, "labels": labels})
            tokens += len(input_ids)
            if len(rows) >= sequences and tokens >= tokens_needed:
                break
    if not rows:
        raise DatasetError(f"no row keeps a completion token at max_seq_length={max_seq_length}; raise max_seq_length")
    return TokenizedData(rows, len(data), truncated, dropped)


def _token_ids(tokenizer: Any, prompt: str | list, completion: str | list, eos: list[int]) -> tuple[list, list]:
    """``(prompt_ids, completion_ids)`` of a row; chat rows through the chat template, as trl's SFTTrainer does.

    trl's rules: the completion starts where the tokenised prompt (with the generation prompt) and
    the tokenised conversation diverge; the template ends the turns, so no EOS is appended; a
    ``messages`` row (empty prompt) is trained whole.
    """
    if isinstance(completion, list):
        from trl.data_utils import common_prefix_length

        conversation = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
        if not prompt:
            return [], conversation
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, return_dict=True, add_generation_prompt=True)[
            "input_ids"
        ]
        split = common_prefix_length(prompt_ids, conversation)
        return conversation[:split], conversation[split:]
    prompt_ids = tokenizer(prompt)["input_ids"] if prompt else []
    return prompt_ids, tokenizer(completion, add_special_tokens=not prompt_ids)["input_ids"] + eos


def save_prepared(data: Any, directory: str | os.PathLike) -> None:
    """Save a normalised dataset so train_model loads it offline with ``load_prepared``."""
    data.save_to_disk(str(directory))


def load_prepared(directory: str | os.PathLike) -> Any:
    """Load what ``save_prepared`` wrote."""
    import datasets

    return datasets.load_from_disk(str(directory))
