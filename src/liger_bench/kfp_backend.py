"""The Kubeflow Pipelines backend a compiled package needs: each feature it uses and the first release with it.

A feature is recognised by the fields it puts in the package: ``package_fields`` reads every field
path of a compiled package (names of components, tasks, parameters and executors as ``*``; the types
of parameters and artifacts and the ``{{$.…}}`` placeholders as part of the path), and each path
belongs to the feature with the longest matching pattern. ``tests/test_kfp_backend.py`` compiles the
pipeline with every compile option and fails on a field no feature claims, or on a feature newer
than ``MIN_BACKEND``, the version README.md, docs/run-on-kubeflow.md and the components'
``metadata.yaml`` state.

Versions are kubeflow/pipelines releases, from its CHANGELOG.md (the entry is named in ``source``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MIN_BACKEND = "2.14"
# Maps keyed by names the pipeline chose; their keys become "*" in a field path.
NAMED_MAPS = frozenset(
    {"components", "tasks", "parameters", "artifacts", "executors", "outputParameters", "outputArtifacts"}
)
# Values, not structure: the walk stops there (their strings are still read for placeholders).
VALUE_FIELDS = frozenset({"defaultValue", "constant", "args", "command", "image", "description"})
TYPED_FIELDS = frozenset({"parameterType", "schemaTitle"})
PLACEHOLDER = re.compile(r"\{\{\$\.(\w+)")


@dataclass(frozen=True)
class Feature:
    """One backend feature the package uses, the first release that has it, and the fields that show it."""

    name: str
    since: str
    source: str
    patterns: tuple[str, ...]


_V2 = "kubeflow/pipelines 2.0.0, the first release of the v2 backend (pipeline spec schema 2.1.0)"
_SPEC_TYPES = [
    f"parameterType={kind}" for kind in ("STRING", "NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN", "LIST", "STRUCT")
]
_ARTIFACT_TYPES = [
    f"schemaTitle=system.{kind}" for kind in ("Artifact", "Model", "Dataset", "Metrics", "HTML", "Markdown")
]


def _under(prefixes: tuple[str, ...], fields: list[str]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{field}" for prefix in prefixes for field in fields)


_DEFINITIONS = tuple(f"{owner}.{side}Definitions" for owner in ("components.*", "root") for side in ("input", "output"))
_TASKS = ("components.*.dag.tasks.*", "root.dag.tasks.*")

FEATURES: tuple[Feature, ...] = (
    Feature(
        "Pipelines of containerised components: tasks, parameters, artifacts, caching, a pipeline output",
        "2.0",
        _V2,
        (
            "schemaVersion",
            "sdkVersion",
            "pipelineInfo.name",
            "pipelineInfo.description",
            "components.*.executorLabel",
            "root.dag.outputs.artifacts",
            "deploymentSpec.executors.*.container.args",
            "deploymentSpec.executors.*.container.command",
            "deploymentSpec.executors.*.container.image",
            "deploymentSpec.executors.*.container.env",
            *_under(_DEFINITIONS, ["parameters.*.description", "parameters.*.defaultValue", "parameters.*.isOptional"]),
            *_under(_DEFINITIONS, [f"parameters.*.{kind}" for kind in _SPEC_TYPES]),
            *_under(_DEFINITIONS, ["artifacts.*.description", "artifacts.*.artifactType.schemaVersion"]),
            *_under(_DEFINITIONS, [f"artifacts.*.artifactType.{kind}" for kind in _ARTIFACT_TYPES]),
            *_under(
                _TASKS,
                [
                    "componentRef.name",
                    "taskInfo.name",
                    "dependentTasks",
                    "cachingOptions.enableCache",
                    "inputs.parameters.*.componentInputParameter",
                    "inputs.parameters.*.runtimeValue.constant",
                    "inputs.parameters.*.taskOutputParameter",
                    "inputs.artifacts.*.componentInputArtifact",
                    "inputs.artifacts.*.taskOutputArtifact",
                ],
            ),
        ),
    ),
    Feature(
        "CPU and memory requests and limits, GPUs (the SDK writes the legacy fields beside the new ones, #11839)",
        "2.0",
        _V2,
        _under(
            ("deploymentSpec.executors.*.container.resources",),
            ["cpuLimit", "cpuRequest", "memoryLimit", "memoryRequest", "accelerator.count", "accelerator.type"],
        ),
    ),
    Feature(
        "Resources as strings, read by backends that resolve placeholders in them",
        "2.4",
        "CHANGELOG 2.4.0: sdk/backend: Add support for placeholders in resource limits (#11501)",
        _under(
            ("deploymentSpec.executors.*.container.resources",),
            [
                "resourceCpuLimit",
                "resourceCpuRequest",
                "resourceMemoryLimit",
                "resourceMemoryRequest",
                "accelerator.resourceCount",
                "accelerator.resourceType",
            ],
        ),
    ),
    Feature(
        "Secrets as environment variables, PVC mounts (kfp-kubernetes use_secret_as_env, mount_pvc)",
        "2.0",
        "kfp-kubernetes 1.0, released with the v2 backend: " + _V2,
        (
            "kubernetes.secretAsEnv.keyToEnv",
            "kubernetes.pvcMount.mountPath",
            "kubernetes.pvcMount.constant",
        ),
    ),
    Feature(
        "A task's retry policy (set_retry: the training task's --train-retries); inside a ParallelFor no release "
        "applies it yet (#13897), and older backends ignore the field",
        "2.14",
        "CHANGELOG 2.14.0: backend: parameterize retryStrategy input in Argo workflow (#11861)",
        _under(
            _TASKS,
            [
                "retryPolicy.backoffDuration",
                "retryPolicy.backoffFactor",
                "retryPolicy.backoffMaxDuration",
                "retryPolicy.maxRetryCount",
            ],
        ),
    ),
    Feature(
        "Pod timeout (kfp-kubernetes set_timeout: activeDeadlineSeconds)",
        "2.1",
        "CHANGELOG 2.1.0: Backend + SDK: Add Backend and SDK support for timeout in pod spec (#10481)",
        ("kubernetes.activeDeadlineSeconds",),
    ),
    Feature(
        "Optional Secrets (use_secret_as_env(optional=True))",
        "2.2",
        "CHANGELOG 2.2.0: Backend + SDK: Add missing optional field to SecretAsVolume and SecretAsEnv (#10550)",
        ("kubernetes.secretAsEnv.optional",),
    ),
    Feature(
        "emptyDir mounts (kfp-kubernetes empty_dir_mount: the training pod's /dev/shm)",
        "2.3",
        "CHANGELOG 2.3.0: Backend + SDK: Update kfp backend and kubernetes sdk to support EmptyDir (#10913)",
        ("kubernetes.emptyDirMounts",),
    ),
    Feature(
        "ParallelFor parallelism (dsl.ParallelFor(..., parallelism=N): --max-concurrency)",
        "2.4",
        "CHANGELOG 2.4.0: backend: Add Parallelism Limit to ParallelFor tasks (#10798)",
        _under(_TASKS, ["iteratorPolicy.parallelismLimit"]),
    ),
    Feature(
        "Node selector, tolerations and Secret and PVC names as pipeline parameters (add_node_selector_json, "
        "add_toleration_json, a Secret name parameter)",
        "2.5",
        "CHANGELOG 2.5.0: backend/sdk: Add input parameterization for various k8s resources (#11770); sdk: Add "
        "Input Parameter support for configmap, secrets, node selectors, tolerations, pull secrets (#11621); "
        "add backend support for toleration lists (90909fc)",
        (
            "kubernetes.nodeSelector.nodeSelectorJson",
            "kubernetes.tolerations.tolerationJson",
            "kubernetes.secretAsEnv.secretNameParameter",
            "kubernetes.pvcMount.pvcNameParameter",
        ),
    ),
    Feature(
        "Pipeline run name and id placeholders (dsl.PIPELINE_JOB_NAME_PLACEHOLDER, PIPELINE_JOB_ID_PLACEHOLDER)",
        "2.5",
        "CHANGELOG 2.5.0: backend: Add support for job and task placeholders in the KFP backend (#11599)",
        ("placeholder.pipeline_job_name", "placeholder.pipeline_job_uuid"),
    ),
    Feature(
        "ParallelFor over a task's list[dict] output whose iterations read upstream tasks' artifacts",
        "2.5",
        "CHANGELOG 2.5.0: backend: parallelFor resolve upstream inputs, fixes #11520 (#11627)",
        _under(_TASKS, ["parameterIterator.items.inputParameter", "parameterIterator.itemInput"]),
    ),
    Feature(
        "dsl.Collected of a ParallelFor's output artifacts (the fan-in to analyze_results)",
        "2.14",
        "CHANGELOG 2.14.0: backend/sdk: enable dsl.Collected for parameters & artifacts (#11725)",
        (
            "components.*.dag.outputs.artifacts",
            "components.*.inputDefinitions.artifacts.*.isArtifactList",
            "components.*.outputDefinitions.artifacts.*.isArtifactList",
        ),
    ),
)


def package_fields(spec: dict[str, Any], platform: dict[str, Any] | None) -> set[str]:
    """Every field path of a compiled package: the pipeline spec's, and its Kubernetes executors' as ``kubernetes.…``.

    Args:
        spec: The package's first YAML document (the pipeline spec).
        platform: Its second document (``platforms``), or None when the package has none.

    Returns:
        Dotted paths such as ``root.dag.tasks.*.iteratorPolicy.parallelismLimit``,
        ``components.*.inputDefinitions.parameters.*.parameterType=STRUCT``,
        ``kubernetes.nodeSelector.nodeSelectorJson.componentInputParameter`` and
        ``placeholder.pipeline_job_name``.

    """
    fields = set(_fields(spec, ()))
    executors = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})).get(
        "executors", {}
    )
    for executor in executors.values():
        fields.update(_fields(executor, ("kubernetes",)))
    return fields


def _fields(node: Any, path: tuple[str, ...]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            step = "*" if path and path[-1] in NAMED_MAPS else key
            if step in VALUE_FIELDS:
                yield ".".join((*path, step))
                yield from _placeholders(value)
            elif step in TYPED_FIELDS:
                yield f"{'.'.join((*path, step))}={value}"
            else:
                yield from _fields(value, (*path, step))
    elif isinstance(node, list) and any(isinstance(item, (dict, list)) for item in node):
        for item in node:
            yield from _fields(item, path)
    else:
        yield ".".join(path)
        yield from _placeholders(node)


def _placeholders(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from (f"placeholder.{name}" for name in PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _placeholders(item)
    elif isinstance(value, list):
        for item in value:
            yield from _placeholders(item)


def feature_of(field: str) -> Feature | None:
    """The feature whose longest pattern is ``field`` or a dotted prefix of it; None when no feature claims it."""
    best: tuple[int, Feature | None] = (-1, None)
    for feature in FEATURES:
        for pattern in feature.patterns:
            if (field == pattern or field.startswith(pattern + ".")) and len(pattern) > best[0]:
                best = (len(pattern), feature)
    return best[1]


def required_features(fields: set[str]) -> tuple[list[Feature], list[str]]:
    """The features ``fields`` use, newest first, and the fields no feature claims (sorted)."""
    used: dict[str, Feature] = {}
    unclaimed = []
    for field in sorted(fields):
        feature = feature_of(field)
        if feature is None:
            unclaimed.append(field)
        else:
            used[feature.name] = feature
    return sorted(used.values(), key=lambda feature: version_key(feature.since), reverse=True), unclaimed


def version_key(version: str) -> tuple[int, ...]:
    """``"2.14"`` as ``(2, 14)``, so that versions compare as numbers."""
    return tuple(int(part) for part in version.split("."))
