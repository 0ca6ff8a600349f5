"""Local inputs: a content hash as their revision, and text files checked line by line.

A local dataset file or model folder has no hub commit. Its revision is a hash of its content,
so a changed file is a new input: recorded in every result, and part of the download tasks' cache
key when the CLI pins it (``liger-bench local``). Text data files are read once here before
``datasets`` parses them, so that a bad byte or a broken JSON line is reported with the user's path
and the line number instead of a byte offset inside an internal copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

REVISION_PREFIX = "sha256:"
_CHUNK = 1 << 20


def content_revision(path: str | Path) -> str:
    """``sha256:<16 hex>`` of a file's bytes, or of a folder's relative file paths and their bytes."""
    path = Path(path).expanduser()
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return REVISION_PREFIX + digest.hexdigest()[:16]


def check_revision(path: str | Path, revision: str, parameter: str) -> str:
    """The content revision of ``path``; raise ``ValueError`` when ``revision`` is set and differs.

    Args:
        path: The local file or folder.
        revision: What the user (or the CLI) pinned; "" accepts the current content.
        parameter: The pipeline parameter that holds ``revision`` (for the message).
    """
    actual = content_revision(path)
    if revision and revision != actual:
        raise ValueError(
            f"{parameter}: {revision!r} does not match the content of the local path {str(path)!r}, which is "
            f"now {actual}; the files changed since the revision was taken: give {actual!r} or an empty revision"
        )
    return actual


def text_file_problem(path: Path) -> str:
    """Why the UTF-8 text data file ``path`` cannot be parsed, with its line; "" when it can.

    ``.jsonl`` files must hold one JSON object per non-empty line; a ``.json`` file either one JSON
    document or JSON lines (as ``datasets``' JSON builder reads it).
    """
    lines = []
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                return f"line {number} is not UTF-8 text ({err.reason} at byte {err.start + 1} of the line)"
    if path.suffix == ".json":
        try:
            json.loads("".join(lines))
            return ""
        except json.JSONDecodeError:
            pass  # not one document: JSON lines, checked below
    if path.suffix in (".json", ".jsonl"):
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    return f"line {number} is not valid JSON ({err.msg} at column {err.colno})"
                if not isinstance(row, dict):
                    return f"line {number} is a JSON {type(row).__name__}, not an object of column values"
    return ""


def json_line_values(path: Path, column: str) -> list[tuple[str, Any]]:
    """``(where, value)`` of ``column`` in every JSON line of the file ``path`` or of the folder's JSON files.

    The values as written, ``where`` being ``line N`` (``'FILE' line N`` in a folder); empty when
    ``path`` holds a single JSON document rather than JSON lines. For the rows ``text_file_problem``
    accepted.
    """
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl"))
    values = []
    for file in files:
        name = "" if file == path else f"{str(file.relative_to(path))!r} "
        lines = file.read_text(encoding="utf-8").splitlines()
        try:
            rows = [(number, json.loads(line)) for number, line in enumerate(lines, start=1) if line.strip()]
        except json.JSONDecodeError:  # one JSON document, not JSON lines
            return []
        values += [(f"{name}line {number}", row.get(column)) for number, row in rows]
    return values
