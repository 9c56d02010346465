"""Settings of one command: what the process environment and the command's options say, each
default computed in one place. The CLI builds a ``Settings`` from ``os.environ`` and the
options; nothing below the CLI reads the process environment.

Directories, first that is set:

- home (``$AETHERFLOW_HOME``): caches, the list of stores this machine used (``stores``), the
  default store ``state.db`` and the default workspace root ``work/``; else
  ``$XDG_STATE_HOME/aetherflow``, else ``~/.local/state/aetherflow``.
- the store a flow's runs are recorded in (:func:`state_location`): ``--state`` (also
  ``AETHERFLOW_STATE``), ``flow.state.path`` (relative to the flow file), ``<home>/state.db``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherflow.compat import split_paths
from aetherflow.errors import Location, ResolutionError, TemplateError, UsageError
from aetherflow.model import FlowSpec

__all__ = ["Settings", "default_home", "render_setting", "settings_from_env", "state_location", "switched_off"]

#: how long a step's retry delay or a ``wait`` may sleep in-process before the run parks WAITING
INLINE_WAIT_MAX = 60.0


def default_home(env: Mapping[str, str]) -> Path:
    """``$AETHERFLOW_HOME``, else ``$XDG_STATE_HOME/aetherflow``, else ``~/.local/state/aetherflow``."""
    home = env.get("AETHERFLOW_HOME")
    if home:
        return Path(home).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return base / "aetherflow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    env: Mapping[str, str]
    home: Path
    state: str | None = None  # --state, or AETHERFLOW_STATE
    plugin_paths: tuple[str, ...] = ()  # --plugin-path, then AETHERFLOW_PLUGIN_PATHS
    events_log: str | None = None
    inline_wait_max: float = INLINE_WAIT_MAX
    clock: Callable[[], float] = field(default=time.time)


def settings_from_env(
    env: Mapping[str, str],
    *,
    state: str | None = None,
    plugin_paths: tuple[str, ...] = (),
    events_log: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Settings:
    """The settings the environment and the options give. ``state`` and ``events_log`` are
    the options' values (their variables are read here when the option is absent)."""
    raw = env.get("AETHERFLOW_INLINE_WAIT_MAX")
    inline = INLINE_WAIT_MAX
    if raw:
        try:
            inline = float(raw)
        except ValueError as exc:
            raise UsageError(f"AETHERFLOW_INLINE_WAIT_MAX={raw!r} is not a number of seconds") from exc
    env_paths = split_paths(env.get("AETHERFLOW_PLUGIN_PATHS", ""))  # ":" or "," (aetherflow-core)
    return Settings(
        env=env,
        home=default_home(env),
        state=state or env.get("AETHERFLOW_STATE") or None,
        plugin_paths=(*plugin_paths, *env_paths),
        events_log=events_log or env.get("AETHERFLOW_EVENTS_LOG") or None,
        inline_wait_max=inline,
        clock=clock,
    )


def switched_off(settings: Settings, variable: str) -> bool:
    """A switch such as ``AETHERFLOW_VALIDATION_CACHE`` says off (``0``, ``false``, ``no``, ``off``)."""
    return settings.env.get(variable, "").strip().lower() in ("0", "false", "no", "off")


def state_location(settings: Settings, flow: FlowSpec | None) -> str:
    """Where a run of ``flow`` is recorded: ``--state``/``AETHERFLOW_STATE``, ``flow.state.path``
    (templated with ``env`` and ``flow_id``; relative to the flow file), ``<home>/state.db``.
    A path is made absolute; a URL is returned as written."""
    from aetherflow.state.backends import is_url

    if settings.state:
        return settings.state if is_url(settings.state) else str(Path(settings.state).expanduser().absolute())
    if flow is not None and flow.state.path:
        from aetherflow import template

        rendered = str(render_setting(flow, "state.path", flow.state.path, template.base_scope(env=settings.env, flow_id=flow.id)))
        if is_url(rendered):
            return rendered
        p = Path(rendered).expanduser()
        return str(p if p.is_absolute() else Path(flow.base_dir) / p)
    return str(settings.home / "state.db")


def render_setting(flow: FlowSpec, what: str, value: str, scope: Mapping[str, Any]) -> Any:
    """A flow setting's template (``flow.workspace.root``, ``flow.state.path``) rendered before the
    run starts: a missing value is a resolution error (exit 2, nothing recorded), naming the file."""
    from aetherflow import template

    try:
        return template.render(value, scope)
    except TemplateError as exc:
        raise ResolutionError(f"flow.{what}: {exc.message}", code=exc.code, hint=exc.hint,
                              location=Location(flow.file, None, None, f"flow.{what}")) from exc
