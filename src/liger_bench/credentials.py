"""Credentials stay out of everything the benchmark writes: the tracking URI is checked, text is redacted.

The rule is up front: ``mlflow_tracking_uri`` must be an http(s) or file URL without a user,
password, query or fragment (``check_tracking_uri``, run by prepare_grid and by the command line
before anything starts). Credentials go into the environment (``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``; on a cluster the ``mlflow_secret``
Secret), which MLflow reads itself. Refusing is the only sound answer: on a cluster kfp logs every
task input before our code runs, and a URI can hide a secret in forms no redaction recognises for
sure (a password with '@', ':' or '/', a token under any query key).

Redaction is the defence in depth behind that rule, for every text we log or send to MLflow:
``redact_credentials`` masks the credential parts of any URL-like word, ``scrub_secrets`` the values
of the secret variables, read by name: never by iterating ``os.environ``, which MLflow's telemetry
thread changes while we run.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

REDACTED = "***"
# Environment variables whose values are secrets (MLflow's and the Hugging Face hub's).
SECRET_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN")
TRACKING_URI_SCHEMES = ("http", "https", "file")
UNSHOWABLE = "holds whitespace, quotes, angle brackets or control characters"
CREDENTIALS_HINT = (
    "give credentials through the environment instead: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME "
    "and MLFLOW_TRACKING_PASSWORD (on a cluster, the Secret named by mlflow_secret)"
)
# A word of text: URLs end at whitespace, quotes, angle brackets and backticks.
_WORD_ENDS = "'\"<>`"
_WORD = re.compile(rf"[^\s{_WORD_ENDS}]+")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_QUERY = re.compile(r"\?[^=?]*=")


def redact_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Masked: the user information of a URL (``scheme://user:pass@host``, up to the last '@', so a
    password may hold '@' and ':'), its query and fragment (``?token=…``, ``#…``), and in words
    without a scheme ``user:pass@host`` and a query with a ``key=`` in it. A word is cut at
    whitespace and quotes; a password holding those is one reason ``check_tracking_uri`` refuses
    credentials in the URI outright.
    """
    return _WORD.sub(lambda word: _redact_word(word.group()), text)


def _redact_word(word: str) -> str:
    scheme = _SCHEME.search(word)
    head, rest = (word[: scheme.end()], word[scheme.end() :]) if scheme else ("", word)
    userinfo, at, host = rest.rpartition("@")
    if at and (scheme or ":" in userinfo):
        rest = f"{REDACTED}@{host}"
    if scheme:
        cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
        if cut >= 0:
            rest = f"{rest[: cut + 1]}{REDACTED}"
    elif _QUERY.search(rest):
        rest = f"{rest[: rest.find('?') + 1]}{REDACTED}"
    return head + rest


def scrub_secrets(text: str) -> str:
    """``text`` with the value of each set ``SECRET_VARIABLES`` variable replaced by ``***``.

    Reads the variables by name: iterating ``os.environ`` while another thread sets or deletes a
    variable raises ``KeyError`` or ``RuntimeError``.
    """
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """``text`` without URL credentials or secret values: what may be logged or sent to MLflow."""
    return scrub_secrets(redact_credentials(text))


def tracking_uri_problem(uri: str) -> str:
    """What is wrong with ``uri`` as a tracking URI, or "" when it is usable (or empty: tracking off)."""
    if not uri.strip():
        return ""
    if _unshowable(uri):
        return UNSHOWABLE
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError as error:
        return f"is not a well-formed URL ({error})"
    if parts.scheme not in TRACKING_URI_SCHEMES:
        return "is not an http(s) or file URL (it needs a scheme such as http://)"
    if "@" in parts.netloc:
        return "holds credentials (user or password)"
    if "?" in uri or "#" in uri:
        return "has a query or fragment (a token there would be logged)"
    if parts.scheme == "file":
        return (
            "" if parts.netloc in ("", "localhost") and parts.path.startswith("/") else "is not file:///absolute/path"
        )
    return "" if parts.hostname else "names no host"


def _unshowable(uri: str) -> bool:
    return any(c.isspace() or not c.isprintable() or c in _WORD_ENDS for c in uri)


def shown_uri(uri: str) -> str:
    """``uri`` as messages show it: redacted, or not at all when redaction could not find its words."""
    return "(a URI not shown)" if _unshowable(uri) else redact(uri)


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking URI that ``tracking_uri_problem`` finds wrong, naming it redacted.

    Raises:
        ValueError: With the problem, what is accepted and where credentials go.

    """
    problem = tracking_uri_problem(uri)
    if problem:
        raise ValueError(
            f"mlflow_tracking_uri: {shown_uri(uri)!r} {problem}; accepted: an http(s) URL such as "
            f"http://mlflow.kubeflow.svc.cluster.local:5000 (or file:///absolute/path) without user, password, "
            f"query or fragment; {CREDENTIALS_HINT}"
        )
