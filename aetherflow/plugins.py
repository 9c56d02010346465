"""Plugin loading: built-ins first, then entry points (group ``aetherflow.plugins``), then
local plugin folders (``--plugin-path`` / ``AETHERFLOW_PLUGIN_PATHS``).

An entry point names a module (imported; the marked classes defined under it are collected) or a
callable ``register(registry)`` (called). A plugin folder holds ``*.py`` modules and packages,
each imported under a private name. A plugin that fails to import is recorded with its error and
does not stop anything that does not need it; a duplicate step or connector name is a
``PluginError`` naming both sources.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from aetherflow.errors import PluginError
from aetherflow.events import OBSERVER_MARK
from aetherflow.registry import Registry

GROUP = "aetherflow.plugins"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point", "path"
    distribution: str | None = None
    version: str | None = None
    steps: tuple[str, ...] = ()
    connectors: tuple[str, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class LoadedPlugins:
    registry: Registry
    plugins: list[PluginInfo] = field(default_factory=list)
    observers: list[Any] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{p.name}: {p.error}" for p in self.plugins if p.error]


def _collect_observers(module: ModuleType, out: list[Any]) -> None:
    for obj in list(vars(module).values()):
        if getattr(obj, OBSERVER_MARK, False) is True and getattr(obj, "__module__", "").startswith(module.__name__):
            # a package re-exporting its submodule's observer is walked twice: collect it once
            if any(o is obj or type(o) is obj for o in out):
                continue
            out.append(obj() if isinstance(obj, type) else obj)


def _import_tree(module: ModuleType) -> list[ModuleType]:
    """The module and, for a package, its submodules (so marked classes anywhere are found)."""
    mods = [module]
    path = getattr(module, "__path__", None)
    if path:
        import pkgutil

        for info in pkgutil.walk_packages(path, prefix=module.__name__ + "."):
            mods.append(importlib.import_module(info.name))
    return mods


def load(
    registry: Registry | None = None,
    *,
    builtin_modules: Sequence[str] | None = None,
    entry_points: Iterable[Any] | None = None,
    plugin_paths: Sequence[str] = (),
    use_entry_points: bool = True,
) -> LoadedPlugins:
    from aetherflow.connectors import BUILTIN_CONNECTOR_MODULES, BUILTIN_CONNECTORS
    from aetherflow.steps import BUILTIN_MODULES, BUILTIN_STEP_TYPES

    reg = registry or Registry()
    out = LoadedPlugins(registry=reg)
    if builtin_modules is None:  # imported when first used (see steps/__init__.py)
        for modname in (*BUILTIN_MODULES, *BUILTIN_CONNECTOR_MODULES):
            steps = tuple(n for n, m in BUILTIN_STEP_TYPES.items() if m == modname)
            conns = tuple(k for k, m in BUILTIN_CONNECTORS.items() if m == modname)
            reg.defer_module(modname, f"builtin ({modname})", steps=steps, connectors=conns)
            out.plugins.append(PluginInfo(name=modname, source="builtin", steps=steps, connectors=conns))
    else:
        for modname in builtin_modules:
            mod = importlib.import_module(modname)
            found, conns_found = reg.collect_module(mod, f"builtin ({modname})")
            out.plugins.append(PluginInfo(name=modname, source="builtin", steps=tuple(found), connectors=tuple(conns_found)))
    if use_entry_points:
        eps = entry_points if entry_points is not None else _entry_points()
        for ep in eps:
            out.plugins.append(_load_entry_point(reg, ep, out.observers))
    seen: set[Path] = set()
    for p in plugin_paths:
        # the same folder named twice (--plugin-path and AETHERFLOW_PLUGIN_PATHS, or the paths a
        # run recorded plus the current ones on resume) is loaded once, not reported as a clash
        if p and Path(p).resolve() not in seen:
            seen.add(Path(p).resolve())
            out.plugins.extend(_load_path(reg, Path(p), out.observers))
    return out


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def _load_entry_point(reg: Registry, ep: Any, observers: list[Any]) -> PluginInfo:
    dist = getattr(getattr(ep, "dist", None), "name", None)
    version = getattr(getattr(ep, "dist", None), "version", None)
    source = f"plugin {dist or ep.name} (entry point {ep.name} = {ep.value})"
    try:
        obj = ep.load()
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
        return PluginInfo(name=ep.name, source="entry point", distribution=dist, version=version, error=f"{type(exc).__name__}: {exc}")
    try:
        if isinstance(obj, ModuleType):
            for mod in _import_tree(obj):
                reg.collect_module(mod, source)
                _collect_observers(mod, observers)
        elif callable(obj):
            obj(_RegistrarFacade(reg, source, observers))
        else:
            raise PluginError(f"entry point {ep.name} = {ep.value} is neither a module nor a callable", code="plugin.bad_entry_point")
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001
        return PluginInfo(name=ep.name, source="entry point", distribution=dist, version=version, error=f"{type(exc).__name__}: {exc}")
    steps, conns = reg.registered_by(source)
    return PluginInfo(name=ep.name, source="entry point", distribution=dist, version=version, steps=steps, connectors=conns)


def _load_path(reg: Registry, folder: Path, observers: list[Any]) -> list[PluginInfo]:
    infos: list[PluginInfo] = []
    if not folder.is_dir():
        return [PluginInfo(name=str(folder), source="path", error="not a directory")]
    candidates = sorted(
        [p for p in folder.iterdir() if (p.suffix == ".py" and not p.name.startswith("_")) or (p.is_dir() and (p / "__init__.py").is_file())]
    )
    for cand in candidates:
        name = cand.stem if cand.suffix == ".py" else cand.name
        modname = f"aetherflow_local_plugins.{abs(hash(str(folder.resolve())))}.{name}"
        source = f"plugin path {cand}"
        try:
            init = cand / "__init__.py" if cand.is_dir() else cand
            spec = importlib.util.spec_from_file_location(
                modname, init, submodule_search_locations=[str(cand)] if cand.is_dir() else None
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {cand}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
            reg.collect_module(mod, source)
            _collect_observers(mod, observers)
            register = getattr(mod, "register", None)
            if callable(register) and not isinstance(register, type):
                register(_RegistrarFacade(reg, source, observers))
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(modname, None)
            infos.append(PluginInfo(name=str(cand), source="path", error=f"{type(exc).__name__}: {exc}"))
            continue
        steps, conns = reg.registered_by(source)
        infos.append(PluginInfo(name=str(cand), source="path", steps=steps, connectors=conns))
    return infos


class _RegistrarFacade:
    """What a ``register(registry)`` plugin callable receives."""

    def __init__(self, reg: Registry, source: str, observers: list[Any]) -> None:
        self._reg = reg
        self._source = source
        self._observers = observers

    def register_step(self, cls: type, name: str | None = None, **meta: Any) -> None:
        from aetherflow.registry import STEP_MARK, register_step

        if name is not None or STEP_MARK not in vars(cls):
            register_step(name or cls.__name__, **meta)(cls)
        self._reg.add_step(cls, self._source)

    def register_connector(self, cls: type, kind: str | None = None, driver: str | None = None) -> None:
        from aetherflow.registry import CONNECTOR_MARK, register_connector

        if kind is not None and driver is not None:
            register_connector(kind, driver)(cls)
        elif CONNECTOR_MARK not in vars(cls):
            raise PluginError(f"{cls.__name__}: register_connector needs kind and driver", code="plugin.bad_connector")
        self._reg.add_connector(cls, self._source)

    def register_observer(self, obs: Any) -> None:
        self._observers.append(obs)

    # aetherflow-core style: registry.register("name", cls)
    def register(self, name: str, cls: type) -> None:
        self.register_step(cls, name)
