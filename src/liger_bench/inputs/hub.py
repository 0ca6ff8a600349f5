"""Hugging Face hub access shared by datasets and models: local path or hub id, the token, errors, retries."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

NETWORK_BACKOFF_S = 20
T = TypeVar("T")


def hub_token() -> str | None:
    """The hub token from ``HF_TOKEN`` (a Kubernetes Secret on a cluster), or None for anonymous access."""
    return os.environ.get("HF_TOKEN") or None


def is_local(name: str) -> bool:
    """True when ``name`` is a path on this machine rather than a hub id ('' is neither: not the current folder)."""
    return bool(name.strip()) and (name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists())


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
        hint = "HF_TOKEN is not set" if not hub_token() else "the HF_TOKEN given has no access"
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
        if name_resolution_failed(err):
            host = urllib.parse.urlsplit(constants.ENDPOINT).hostname
            raise error(
                f"{kind}_name: {name!r} is not a local path and the hub's host name {host!r} does not resolve "
                "(no DNS, or no network); set HF_ENDPOINT to a hub this machine reaches, HF_HUB_OFFLINE=1 to use "
                "the local Hugging Face cache, or give a local path"
            ) from err
        # huggingface_hub lets the HTTP client's connection errors through unchanged.
        detail = str(err).splitlines()[0] if str(err) else ""
        raise error(
            f"{kind}_name: {name!r} is not a local path and the hub at {constants.ENDPOINT} could not be "
            f"reached or refused the request ({type(err).__name__}: {detail}); check the node's network "
            "access and HF_ENDPOINT, or give a local path"
        ) from err


def from_hub(
    call: Callable[[], T], kind: str, name: str, revision: str, error: type[ValueError], network_retries: int
) -> T:
    """``call()`` under ``hub_errors``, retried ``network_retries`` times when the network failed.

    Only a connection error, a timeout, HTTP 429 or a 5xx is retried (20 s, then doubling); "not
    found", "gated", a bad revision, an empty name or a host name that does not resolve fail at once:
    the pipeline's download tasks have no retries of their own, because kfp would retry those too.
    """
    if not name.strip():
        raise error(f"{kind}_name is empty; give a Hugging Face id such as 'org/name' or a local path")
    attempt = 0
    while True:
        try:
            with hub_errors(kind, name, revision, error):
                return call()
        except error as err:
            if attempt == network_retries or not is_transient(err.__cause__):
                raise
            delay = NETWORK_BACKOFF_S * 2**attempt
            attempt += 1
            print(f"[liger-bench] {err}; retrying in {delay} s ({attempt} of {network_retries})", flush=True)
            time.sleep(delay)


def is_transient(err: BaseException | None) -> bool:
    """True for a network failure worth retrying: no connection, a timeout, HTTP 429 or 5xx.

    A host name that does not resolve is not retried: offline, or a wrong ``HF_ENDPOINT``, it stays
    so for the minute the retries would take.
    """
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    if err is None or name_resolution_failed(err):
        return False
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else 0
        return status == 429 or status >= 500
    return isinstance(err, (HTTPError, ConnectionError, TimeoutError))


def name_resolution_failed(err: BaseException) -> bool:
    """True when ``err`` or an exception it was raised from is a failed host name lookup (``socket.gaierror``).

    The HTTP client wraps the resolver's error in its own connection errors; its chain keeps it.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, socket.gaierror):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
