"""aetherflow-core compatibility of the environment: what its settings and environment variables
become here. Pure functions over an ``env`` mapping (the CLI passes the process environment in).

* :func:`split_paths` — ``AETHERFLOW_PLUGIN_PATHS``: ``:`` (``os.pathsep``) or ``,``
  (aetherflow-core's separator).
* :class:`CoreSettings` — what aetherflow-core's ``Settings`` (``ctx.settings`` of its steps,
  ``aetherflow.core.api.Settings``) held, read-only, filled with what aetherflow does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aetherflow.records import field, record


def split_paths(value: str) -> tuple[str, ...]:
    """The folders of an ``AETHERFLOW_PLUGIN_PATHS`` value: separated by ``:`` (``os.pathsep``)
    or by ``,`` (aetherflow-core's separator), surrounding blanks ignored."""
    return tuple(p.strip() for p in re.split(r"[:,]", value) if p.strip())


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None else value.strip().lower() == "true"


@record(frozen=True, kw_only=True)
class CoreSettings:
    """aetherflow-core's ``Settings`` as a read-only view: the same field names, aetherflow's
    values. ``work_root`` is the flow's workspace root; ``state_root`` is ``None`` (the store is
    chosen per flow, docs/state.md); plugins never fail a run at import (``plugin_strict`` is
    false: a broken plugin is a warning) and templates are always strict; connectors are cached
    per run; the logging fields follow ``AETHERFLOW_LOG_LEVEL`` / ``AETHERFLOW_LOG_FORMAT``."""

    work_root: str
    state_root: str | None = None
    plugin_paths: tuple[str, ...] = field(default_factory=tuple)
    plugin_strict: bool = False
    strict_templates: bool = True
    log_level: str = "WARNING"
    log_format: str = "text"
    metrics_module: str | None = None
    connector_cache_default: str = "run"
    connector_cache_disabled: bool = False
    secrets_module: str | None = None
    secrets_path: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, work_root: str = "") -> CoreSettings:
        """The view for an environment snapshot (aetherflow-core's ``Settings.from_env``)."""
        return cls(
            work_root=work_root or env.get("AETHERFLOW_WORK_ROOT", ""),
            plugin_paths=split_paths(env.get("AETHERFLOW_PLUGIN_PATHS", "")),
            log_level=(env.get("AETHERFLOW_LOG_LEVEL") or "WARNING").upper(),
            log_format=(env.get("AETHERFLOW_LOG_FORMAT") or "text").lower(),
            metrics_module=env.get("AETHERFLOW_METRICS_MODULE") or None,
            connector_cache_disabled=_flag(env, "AETHERFLOW_CONNECTOR_CACHE_DISABLED", False),
            secrets_module=env.get("AETHERFLOW_SECRETS_MODULE") or None,
            secrets_path=env.get("AETHERFLOW_SECRETS_PATH") or None,
        )
