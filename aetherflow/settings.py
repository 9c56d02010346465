"""Settings of one command: what its options, the process environment and the config file
(``config.py``) say, each default computed in one place, each value kept with its source for
``aetherflow config show``. Precedence: flags > environment > config file > defaults. The CLI
builds a ``Settings`` from ``os.environ`` and the options; nothing below the CLI reads the
process environment.

Directories, first that is set:

- home (``$AETHERFLOW_HOME``): caches, the list of stores this machine used (``stores``), the
  default store ``state.db`` and the default workspace root ``work/``; else systemd's
  ``$STATE_DIRECTORY`` (its first path), else ``$XDG_STATE_HOME/aetherflow``, else
  ``~/.local/state/aetherflow``.
- the store a flow's runs are recorded in (:func:`state_location`): ``--state`` (also
  ``AETHERFLOW_STATE``, the config file's ``state``), ``flow.state.path`` (relative to the flow
  file), ``<home>/state.db``.

Values and their sources (flag, variable, config key): ``state`` (``--state``,
``AETHERFLOW_STATE``, ``state``), ``events_log`` (``--events-log``, ``AETHERFLOW_EVENTS_LOG``,
``events_log``), ``plugin_paths`` (every source adds folders: flags, then the variable, then the
file), ``log_format`` (``--log-format``, ``log_format``: ``AETHERFLOW_LOG_FORMAT`` is
aetherflow-core's event lines, see ``compat.core_logging``),
``on_locked`` (``--on-locked``, ``AETHERFLOW_ON_LOCKED``, ``on_locked``), ``metrics.textfile``
(``--metrics-textfile``, ``AETHERFLOW_METRICS_TEXTFILE``, ``[metrics] textfile``),
``retention.max_age`` (``[retention] max_age``), ``notify`` (``[[notify]]``),
``inline_wait_max`` (``AETHERFLOW_INLINE_WAIT_MAX``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherflow.compat import split_paths
from aetherflow.config import (
    SYSTEM_CONFIG,
    ConfigFile,
    OnLocked,
    Setting,
    load_config,
    parse_on_locked,
)
from aetherflow.errors import Location, ResolutionError, TemplateError, UsageError
from aetherflow.model import FlowSpec, NotifySpec, empty_map

__all__ = [
    "Settings",
    "default_home",
    "home_and_source",
    "render_setting",
    "settings_from_env",
    "state_location",
    "switched_off",
]

#: how long a step's retry delay or a ``wait`` may sleep in-process before the run parks WAITING
INLINE_WAIT_MAX = 60.0


def home_and_source(env: Mapping[str, str]) -> tuple[Path, str]:
    """The home directory and the variable that chose it (``default`` for the last resort)."""
    home = env.get("AETHERFLOW_HOME")
    if home:
        return Path(home).expanduser(), "AETHERFLOW_HOME"
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd), "STATE_DIRECTORY"
    xdg = env.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "aetherflow", "XDG_STATE_HOME"
    return Path(env.get("HOME") or Path.home()) / ".local" / "state" / "aetherflow", "default"


def default_home(env: Mapping[str, str]) -> Path:
    """``$AETHERFLOW_HOME``, else ``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/aetherflow``,
    else ``~/.local/state/aetherflow``."""
    return home_and_source(env)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    env: Mapping[str, str]
    home: Path
    state: str | None = None  # --state, AETHERFLOW_STATE, the config file's state
    plugin_paths: tuple[str, ...] = ()  # --plugin-path, then AETHERFLOW_PLUGIN_PATHS, then the config file's
    events_log: str | None = None
    inline_wait_max: float = INLINE_WAIT_MAX
    clock: Callable[[], float] = field(default=time.time)
    log_format: str = "text"
    on_locked: OnLocked = field(default_factory=OnLocked)
    metrics_textfile: str | None = None
    notify: tuple[NotifySpec, ...] = ()  # the config file's [[notify]]
    retention_max_age: float | None = None  # seconds
    config: ConfigFile = field(default_factory=ConfigFile)
    #: every effective value (by its name in config show) with its source
    sources: Mapping[str, Setting] = field(default_factory=empty_map)


LOG_FORMATS = ("text", "json")


def settings_from_env(
    env: Mapping[str, str],
    *,
    config: str | None = None,
    state: str | None = None,
    plugin_paths: tuple[str, ...] = (),
    events_log: str | None = None,
    log_format: str | None = None,
    on_locked: str | None = None,
    metrics_textfile: str | None = None,
    clock: Callable[[], float] = time.time,
    system_config: Path = SYSTEM_CONFIG,
) -> Settings:
    """The settings the options (the keyword arguments: ``None`` when not given), the
    environment and the config file give, first that is set."""
    cfg = load_config(env, config, system_file=system_config)
    file = cfg.values
    chosen: dict[str, Setting] = {}

    def pick(name: str, flag: str, flag_value: Any, var: str | None, default: Any = None) -> Any:
        if flag_value not in (None, ""):
            chosen[name] = Setting(flag_value, flag)
        elif var is not None and env.get(var):
            chosen[name] = Setting(env[var], var)
        elif name in file:
            chosen[name] = file[name]
        else:
            chosen[name] = Setting(default, "default")
        return chosen[name].value

    home, home_source = home_and_source(env)
    chosen["home"] = Setting(str(home), home_source)
    chosen["config"] = Setting(cfg.path, cfg.found_by)
    state_value = pick("state", "--state", state, "AETHERFLOW_STATE")
    events = pick("events_log", "--events-log", events_log, "AETHERFLOW_EVENTS_LOG")
    # no variable: AETHERFLOW_LOG_FORMAT is aetherflow-core's (its event lines, compat.core_logging)
    fmt = pick("log_format", "--log-format", log_format, None, "text")
    if fmt not in LOG_FORMATS:
        raise UsageError(f"--log-format {fmt!r} (from {chosen['log_format'].source}): use text or json",
                         code="usage.log_format")
    locked = pick("on_locked", "--on-locked", on_locked, "AETHERFLOW_ON_LOCKED", OnLocked())
    if isinstance(locked, str):
        locked = parse_on_locked(locked, f"--on-locked (from {chosen['on_locked'].source})")
        chosen["on_locked"] = Setting(locked, chosen["on_locked"].source)
    metrics = pick("metrics.textfile", "--metrics-textfile", metrics_textfile, "AETHERFLOW_METRICS_TEXTFILE")
    env_paths = tuple(split_paths(env.get("AETHERFLOW_PLUGIN_PATHS", "")))  # ":" or "," (aetherflow-core)
    file_paths: tuple[str, ...] = file["plugin_paths"].value if "plugin_paths" in file else ()
    paths = [Setting(p, "--plugin-path") for p in plugin_paths]
    paths += [Setting(p, "AETHERFLOW_PLUGIN_PATHS") for p in env_paths]
    paths += [Setting(p, file["plugin_paths"].source) for p in file_paths]
    chosen["plugin_paths"] = Setting(tuple(paths), "default" if not paths else "")
    retention = file.get("retention.max_age")
    chosen["retention.max_age"] = retention if retention is not None else Setting(None, "default")
    notify = file.get("notify")
    chosen["notify"] = notify if notify is not None else Setting((), "default")
    raw = env.get("AETHERFLOW_INLINE_WAIT_MAX")
    inline = INLINE_WAIT_MAX
    if raw:
        try:
            inline = float(raw)
        except ValueError as exc:
            raise UsageError(f"AETHERFLOW_INLINE_WAIT_MAX={raw!r} is not a number of seconds") from exc
    chosen["inline_wait_max"] = Setting(inline, "AETHERFLOW_INLINE_WAIT_MAX" if raw else "default")
    return Settings(
        env=env,
        home=home,
        state=state_value or None,
        plugin_paths=tuple(s.value for s in paths),
        events_log=events or None,
        inline_wait_max=inline,
        clock=clock,
        log_format=str(fmt),
        on_locked=locked,
        metrics_textfile=metrics or None,
        notify=tuple(chosen["notify"].value),
        retention_max_age=retention.value[1] if retention is not None else None,
        config=cfg,
        sources=chosen,
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
        _postgres_needs_url(flow)
        p = Path(rendered).expanduser()
        return str(p if p.is_absolute() else Path(flow.base_dir) / p)
    if flow is not None:
        _postgres_needs_url(flow)
    return str(settings.home / "state.db")


def _postgres_needs_url(flow: FlowSpec) -> None:
    if flow.state.backend == "postgres":
        raise ResolutionError(
            "flow.state.backend is postgres, but flow.state.path is not a postgresql:// URL",
            code="state.backend_path",
            hint="set flow.state.path to postgresql://USER@HOST:PORT/DB (or pass --state / AETHERFLOW_STATE)",
            location=Location(flow.file, None, None, "flow.state.path"),
        )


def render_setting(flow: FlowSpec, what: str, value: str, scope: Mapping[str, Any]) -> Any:
    """A flow setting's template (``flow.workspace.root``, ``flow.state.path``) rendered before the
    run starts: a missing value is a resolution error (exit 2, nothing recorded), naming the file."""
    from aetherflow import template

    try:
        return template.render(value, scope)
    except TemplateError as exc:
        raise ResolutionError(f"flow.{what}: {exc.message}", code=exc.code, hint=exc.hint,
                              location=Location(flow.file, None, None, f"flow.{what}")) from exc
