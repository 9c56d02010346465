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
from dataclasses import dataclass


def split_paths(value: str) -> tuple[str, ...]:
    """The folders of an ``AETHERFLOW_PLUGIN_PATHS`` value: separated by ``:`` (``os.pathsep``)
    or by ``,`` (aetherflow-core's separator), surrounding blanks ignored."""
    return tuple(p.strip() for p in re.split(r"[:,]", value) if p.strip())


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None else value.strip().lower() == "true"


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    """aetherflow-core's ``Settings`` as a read-only view: the same field names, aetherflow's
    values. ``work_root`` is the flow's workspace root; ``state_root`` is ``None`` (the store is
    chosen per flow, docs/state.md); plugins never fail a run at import (``plugin_strict`` is
    false: a broken plugin is a warning) and templates are always strict; connectors are cached
    per run; the logging fields follow ``AETHERFLOW_LOG_LEVEL`` / ``AETHERFLOW_LOG_FORMAT``."""

    work_root: str
    state_root: str | None = None
    plugin_paths: tuple[str, ...] = ()
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


#: aetherflow-core environment variables aetherflow does not read, and what to use instead
IGNORED_ENV: Mapping[str, str] = {
    "AETHERFLOW_ENV_FILES_JSON": "list the env files in flow.env_files or pass --env-file FILE (dotenv format; "
                                 "its json and directory kinds are not read)",
    "AETHERFLOW_SECRETS_MODULE": "decode resource fields with a plugin decoder (@register_decoder(\"name\"), "
                                 "decode: {config: {password: name}}); decode: true means base64 here; take secret "
                                 "values from secrets: (env, file, dotenv, command) instead of expand_env",
    "AETHERFLOW_SECRETS_PATH": "decode resource fields with a plugin decoder (@register_decoder(\"name\"), "
                               "decode: {config: {password: name}}); decode: true means base64 here; take secret "
                               "values from secrets: (env, file, dotenv, command) instead of expand_env",
    "AETHERFLOW_VALIDATE_ENV_STRICT": "not needed: run refuses to start when a variable the flow needs is missing "
                                      "(exit 2), and `aetherflow doctor FLOW` lists them beforehand",
    "AETHERFLOW_PLUGIN_STRICT": "a plugin that fails to import is a warning and fails only the flows that use "
                                "its step types (at validation, before anything runs)",
    "AETHERFLOW_STRICT_TEMPLATES": "templates are always strict: a missing value without a default is an error",
    "AETHERFLOW_METRICS_MODULE": "receive run, job and step events with an observer plugin (@register_observer)",
    "AETHERFLOW_SETTINGS_MODULE": "settings come from command-line options and environment variables",
    "AETHERFLOW_CONNECTOR_CACHE_DEFAULT": "a connector is built once per run and closed at its end",
    "AETHERFLOW_CONNECTOR_CACHE_DISABLED": "a connector is built once per run and closed at its end",
}


def ignored_env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line per aetherflow-core variable set (not empty) in ``env`` that aetherflow does
    not read, saying what replaces it."""
    return [f"{name} is set but aetherflow does not read it (aetherflow-core setting): {instead}"
            for name, instead in IGNORED_ENV.items() if env.get(name, "").strip()]


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


def core_logging(env: Mapping[str, str], verbose: int, quiet: bool, log_format: str) -> tuple[int, bool, str, str | None]:
    """``(verbose, quiet, log_format, core_events)`` for ``run`` and ``resume`` with
    aetherflow-core's logging variables taken into account, when no option says otherwise:

    * ``AETHERFLOW_LOG_LEVEL``: ``DEBUG`` is ``-vv``, ``INFO`` ``-v`` (without
      ``AETHERFLOW_LOG_FORMAT``), ``ERROR`` / ``CRITICAL`` ``-q`` (only when neither ``-v`` nor
      ``-q`` is given);
    * ``AETHERFLOW_LOG_FORMAT`` (``json`` or ``text``): aetherflow-core's event lines are written
      to stderr in that format (``core_events``, see ``events.CoreEventLines``) unless ``-q`` or
      a level above INFO hides them; ``json`` also makes ``--log-format json`` the default."""
    level = env.get("AETHERFLOW_LOG_LEVEL", "").strip().upper()
    fmt = env.get("AETHERFLOW_LOG_FORMAT", "").strip().lower()
    if level and not verbose and not quiet:
        if level == "DEBUG":
            verbose = 2
        elif level == "INFO" and not fmt:  # with a format, the event lines are its INFO output
            verbose = 1
        elif _LEVELS.get(level, 0) >= 40:
            quiet = True
    if not fmt:
        return verbose, quiet, log_format, None
    core = "json" if fmt == "json" else "text"
    if core == "json" and log_format == "text":
        log_format = "json"
    shown = not quiet and _LEVELS.get(level or "INFO", 20) <= 20
    return verbose, quiet, log_format, core if shown else None
