"""Thin helpers over ``kfp.Client`` behind ``liger-bench upload`` and ``liger-bench run``.

Authentication is kfp.Client's own; these functions add no mechanism of their own:

- Credentials kfp.Client finds by itself apply: ``~/.config/kfp/context.json`` (cookie or header
  saved by ``kfp`` tooling), the ``KF_PIPELINES_*`` OAuth variables, ``KF_PIPELINES_UI_ENDPOINT``.
- Inside a pod, kfp.Client authenticates with the projected service-account token at
  ``$KF_PIPELINES_SA_TOKEN_PATH`` (default ``/var/run/secrets/kubeflow/pipelines/token``) only when
  no host is given. Because the CLI always names the host, ``_client`` hands kfp.Client that same
  token source (kfp's ``ServiceAccountTokenVolumeCredentials``) whenever the token file exists.
- ``namespace`` is the Kubeflow profile namespace of a multi-user deployment; leave it None on a
  standalone (single-user) Kubeflow Pipelines.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from pathlib import Path
from typing import Any

import yaml

from liger_bench.cli.userinput import UserError
from liger_bench.versions import package_version


def load_params(path: str | Path) -> dict[str, Any]:
    """Read pipeline parameters from an inputs file: a YAML or JSON mapping of name to value.

    Args:
        path: The inputs file (``.json``, ``.yaml`` or ``.yml``; JSON is read as JSON, the rest as YAML).

    Returns:
        The parameters; an empty file gives an empty dict.

    Raises:
        ValueError: The file does not parse, or its top level is not a mapping with string keys.

    """
    path = Path(path)
    text = path.read_text()
    try:
        params = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot parse the inputs file {path}: {error}") from error
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(name, str) for name in params):
        raise ValueError(
            f"the inputs file {path} must hold a mapping of parameter name to value, "
            f"e.g. 'n_runs: 3', got {type(params).__name__}"
        )
    return params


def pipeline_parameters(package_path: str | Path) -> list[str]:
    """Names of the run-time parameters a compiled pipeline package declares."""
    with open(package_path) as package:
        document = next(doc for doc in yaml.safe_load_all(package) if doc and "root" in doc)
    return sorted(document["root"].get("inputDefinitions", {}).get("parameters", {}))


def upload_pipeline(
    host: str, package_path: str, name: str, version: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """Upload a pipeline package: a new pipeline, or a new version of the pipeline named ``name``.

    Args:
        host: KFP API endpoint, e.g. ``https://kubeflow.example.com/pipeline`` or
            ``http://localhost:8080`` behind ``kubectl port-forward``.
        package_path: Compiled pipeline package (YAML).
        name: Pipeline name shown in the UI.
        version: Name of the new version when the pipeline exists already; None: the package
            version and a UTC timestamp. The first upload's version is named after the pipeline by KFP.
        namespace: Kubeflow profile namespace (multi-user); None on standalone KFP.

    Returns:
        ``pipeline_id``, ``pipeline_name``, ``pipeline_version_id``, ``pipeline_version_name`` and
        ``created`` (True when the pipeline itself was new).

    """
    client = _client(host, namespace)
    pipeline_id = _find_pipeline(client, name, namespace)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(package_path, pipeline_name=name, namespace=namespace)
        first = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1, sort_by="created_at desc")
        created = first.pipeline_versions[0] if first.pipeline_versions else None
        return {
            "pipeline_id": pipeline.pipeline_id,
            "pipeline_name": name,
            "pipeline_version_id": created.pipeline_version_id if created else None,
            "pipeline_version_name": created.display_name if created else None,
            "created": True,
        }
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    added = client.upload_pipeline_version(
        package_path, version or f"{package_version()} {stamp}", pipeline_id=pipeline_id
    )
    return {
        "pipeline_id": pipeline_id,
        "pipeline_name": name,
        "pipeline_version_id": added.pipeline_version_id,
        "pipeline_version_name": added.display_name,
        "created": False,
    }


def run_pipeline(
    host: str,
    package_path: str,
    params: dict[str, Any],
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """Start a run of a pipeline package (``kfp.Client.create_run_from_pipeline_package``).

    Args:
        host: KFP API endpoint (see ``upload_pipeline``).
        package_path: Compiled pipeline package (YAML).
        params: Run-time parameters, e.g. from ``load_params``; unset ones keep their defaults.
        experiment: KFP experiment, created when missing; None: ``$KF_PIPELINES_DEFAULT_EXPERIMENT_NAME``
            or ``Default``, as kfp.Client decides.
        run_name: Run name shown in the UI; None: the package file name and the time.
        namespace: Kubeflow profile namespace (multi-user); None on standalone KFP.

    Returns:
        ``run_id``, ``run_name``, ``experiment_id`` and ``url`` (the run's page in the KFP UI).

    Raises:
        ValueError: ``params`` names a parameter the pipeline does not declare (checked before
            anything is sent).

    """
    declared = pipeline_parameters(package_path)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"unknown pipeline parameter(s) {unknown}; the pipeline accepts {declared}")
    client = _client(host, namespace)
    result = client.create_run_from_pipeline_package(
        package_path, arguments=params, run_name=run_name, experiment_name=experiment, namespace=namespace
    )
    run = result.run_info
    return {
        "run_id": run.run_id,
        "run_name": run.display_name,
        "experiment_id": run.experiment_id,
        "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}",
    }


def _client(host: str, namespace: str | None):
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH, Client
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token_path = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH
    credentials = ServiceAccountTokenVolumeCredentials(token_path) if os.path.isfile(token_path) else None
    from urllib3.exceptions import MaxRetryError

    options = {"namespace": namespace} if namespace else {}
    with warnings.catch_warnings():
        # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2; noise for a CLI.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return Client(host=host, credentials=credentials, **options)
        except MaxRetryError as error:
            # kfp.Client checks the API's health on construction; urllib3 words the cause last.
            cause = str(error.reason).rpartition("): ")[2].rstrip(")\"'")
            raise UserError(
                f"cannot reach the Kubeflow Pipelines API at {host} ({cause}); check --host, e.g. "
                "http://localhost:8080 behind 'kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80'"
            ) from None


def _find_pipeline(client, name: str, namespace: str | None) -> str | None:
    """ID of the pipeline named ``name`` in ``namespace`` (kfp's get_pipeline_id ignores namespaces)."""
    name_filter = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    found = client.list_pipelines(filter=name_filter, namespace=namespace, page_size=2).pipelines or []
    if len(found) > 1:
        raise ValueError(f"more than one pipeline is named {name!r}; pass a unique name")
    return found[0].pipeline_id if found else None
