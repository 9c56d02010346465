"""aetherflow-core compatibility: the public API of the ``aetherflow-core`` 0.0.x package.

Plugins written against aetherflow-core import from here. Every name of ``aetherflow.api`` is
exported as the same object; the names aetherflow-core had and ``aetherflow.api`` has not are
defined here (docs/migrating.md, "Plugin API"):

* ``ConnectorBase``, ``ConnectorInit`` — its connector base class and the object its
  ``__init__(self, init)`` receives (both constructor shapes work, see connectors/base.py);
* ``RunContext`` — the type of a step's ``ctx`` (``aetherflow.api.StepContext``);
* ``Settings`` — what its ``ctx.settings`` held, read-only (``aetherflow.compat.CoreSettings``);
* ``FlowSpec``, ``FlowMetaSpec``, ``JobSpec`` — read-only views of a flow with its field names
  (``FlowSpec.model_validate(data)`` validates a parsed flow; ``FlowSpec.from_spec`` wraps
  ours); ``StepSpec``, ``ResourceSpec``, ``WorkspaceSpec``, ``StateSpec``, ``LocksSpec`` are
  aetherflow's own frozen specs (every field aetherflow-core's had, and more);
  ``CleanupPolicy``, ``LockScope`` (their value types), ``RemoteFileMeta``;
* ``require``, ``require_attr`` — import an optional dependency or fail saying what to install;
* ``get_step``, ``list_steps``, ``get_connector``, ``list_connectors`` — the step and connector
  types a fresh registry loads (built-ins, installed plugins, the given plugin folders);
* ``new_run_id`` — a new run id, in aetherflow's format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aetherflow.api import *  # noqa: F403
from aetherflow.api import StepContext, StepError
from aetherflow.api import __all__ as _PUBLIC
from aetherflow.compat import CoreSettings as Settings  # noqa: F401 - re-exported
from aetherflow.connectors.base import ConnectorBase, ConnectorInit  # noqa: F401 - re-exported
from aetherflow.model import (
    EMPTY,
    LocksSpec,
    ResourceSpec,
    StateSpec,
    StepSpec,
    WorkspaceSpec,
    freeze,
)

RunContext = StepContext
CleanupPolicy = Literal["on_success", "always", "never"]
LockScope = Literal["none", "job", "flow"]

#: the names only this module exports (aetherflow-core's, beyond aetherflow.api)
COMPAT_NAMES = [
    "CleanupPolicy",
    "ConnectorBase",
    "ConnectorInit",
    "FlowMetaSpec",
    "FlowSpec",
    "JobSpec",
    "LockScope",
    "LocksSpec",
    "RemoteFileMeta",
    "ResourceSpec",
    "RunContext",
    "Settings",
    "StateSpec",
    "StepSpec",
    "WorkspaceSpec",
    "get_connector",
    "get_step",
    "list_connectors",
    "list_steps",
    "new_run_id",
    "require",
    "require_attr",
]

__all__ = [*_PUBLIC, *COMPAT_NAMES]

_LAYOUT = {"artifacts": "artifacts", "scratch": "scratch", "manifests": "manifests"}


# ---------------------------------------------------------------------------------------------
# read-only views of a flow, with aetherflow-core's field names. WorkspaceSpec, StateSpec,
# LocksSpec, ResourceSpec and StepSpec are aetherflow's own (frozen, with every field
# aetherflow-core's had); a job's `when` and the flow's header differ, hence these two views.


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowMetaSpec:
    id: str
    description: str | None = None
    workspace: WorkspaceSpec = field(default_factory=WorkspaceSpec)
    state: StateSpec = field(default_factory=StateSpec)
    locks: LocksSpec = field(default_factory=LocksSpec)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    id: str
    steps: tuple[StepSpec, ...]
    description: str | None = None
    depends_on: tuple[str, ...] = ()
    when: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSpec:
    flow: FlowMetaSpec
    jobs: tuple[JobSpec, ...]
    version: int = 1
    resources: Mapping[str, ResourceSpec] = field(default_factory=lambda: EMPTY)

    @classmethod
    def from_spec(cls, spec: Any) -> FlowSpec:
        """The view of one of aetherflow's own flows (``aetherflow.model.FlowSpec``)."""
        workspace = replace(spec.workspace, layout=freeze({**_LAYOUT, **spec.workspace.layout}))
        meta = FlowMetaSpec(id=spec.id, description=spec.description, workspace=workspace, state=spec.state,
                            locks=spec.locks)
        jobs = tuple(JobSpec(id=j.id, description=j.description, depends_on=j.depends_on, when=j.when_text, steps=j.steps)
                     for j in spec.jobs)
        return cls(flow=meta, jobs=jobs, resources=spec.resources)

    @classmethod
    def model_validate(cls, data: Mapping[str, Any]) -> FlowSpec:
        """Validate a parsed flow (a mapping, as ``yaml.safe_load`` returns it) the way
        ``aetherflow validate`` checks a file's structure; raises ``SpecError`` naming every
        problem. Step types and their inputs are checked by ``aetherflow validate``."""
        import json

        from aetherflow.spec import load_flow

        raw = json.dumps(data, default=_plain).encode("utf-8")  # JSON is YAML: the one loader checks it
        return cls.from_spec(load_flow("<FlowSpec.model_validate>", raw=raw).flow)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not a flow value")


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFileMeta:
    """A remote file as aetherflow-core's file connectors described it."""

    rel_path: str | None = None
    path: str | None = None
    name: str | None = None
    is_dir: bool | None = False
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None


# ---------------------------------------------------------------------------------------------
# helpers


def require(spec: str) -> Any:
    """Import an optional dependency: ``"a.b"`` is the module, ``"a.b:c"`` the attribute ``c``
    of module ``a.b``. Missing: a ``StepError`` saying what to install."""
    if ":" in spec:
        module, attr = spec.split(":", 1)
        return require_attr(module, attr)
    import importlib

    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise StepError(f"optional dependency missing: module {spec}; install it to use this connector or step",
                        code="plugin.missing_dependency") from exc


def require_attr(module_name: str, attr_name: str) -> Any:
    """``from module_name import attr_name``, or a ``StepError`` saying what is missing."""
    module = require(module_name)
    try:
        return getattr(module, attr_name)
    except AttributeError as exc:
        raise StepError(f"optional dependency missing: {module_name} has no {attr_name}; install a version that has it",
                        code="plugin.missing_dependency") from exc


def new_run_id() -> str:
    """A new run id, as ``aetherflow run`` makes them (UTC time and random hex)."""
    import time

    from aetherflow.runner import new_run_id as make

    return make(time.time)


def _registry(plugin_paths: Sequence[str]) -> Any:
    from aetherflow import plugins

    return plugins.load(plugin_paths=tuple(plugin_paths)).registry


def get_step(name: str, *, plugin_paths: Sequence[str] = ()) -> type:
    """The class of step type ``name`` (built-ins, installed plugins, ``plugin_paths``);
    ``KeyError`` naming the known types when there is none."""
    found = _registry(plugin_paths).step(name)
    if found is None:
        raise KeyError(f"unknown step type: {name}; known: {', '.join(list_steps(plugin_paths=plugin_paths))}")
    return found.cls  # type: ignore[no-any-return]


def list_steps(*, plugin_paths: Sequence[str] = ()) -> list[str]:
    """Every step type a fresh registry knows, sorted."""
    return sorted(_registry(plugin_paths).steps)


def get_connector(kind: str, driver: str, *, plugin_paths: Sequence[str] = ()) -> type:
    """The connector class of ``kind:driver`` (aliases included); ``KeyError`` when unknown."""
    found = _registry(plugin_paths).connector(kind, driver)
    if found is None:
        raise KeyError(f"unknown connector: {kind}:{driver}; known: {', '.join(list_connectors(plugin_paths=plugin_paths))}")
    return found.cls  # type: ignore[no-any-return]


def list_connectors(*, plugin_paths: Sequence[str] = ()) -> list[str]:
    """Every ``kind:driver`` a fresh registry knows (aliases included), sorted."""
    reg = _registry(plugin_paths)
    return sorted({*reg.connectors, *reg.aliases})
