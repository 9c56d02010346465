"""Plugin loading: built-ins first, then entry points (group ``aetherflow.plugins``), then
local plugin folders (``--plugin-path`` / ``AETHERFLOW_PLUGIN_PATHS``).

An entry point names a module (imported with its submodules; the marked classes defined under
it are collected, and a module-level ``register`` is called) or a callable (called: with a
registrar when it takes a parameter, ``register(registry)``, without one when it takes none,
``register()`` as aetherflow-core calls it). Either way the marked classes of the modules already
imported under the entry point's package are collected too, so a plugin that registers at import
and points its entry point at a no-op ``register`` loses nothing. A plugin folder is added to
``sys.path`` (its modules import each other by name) and each ``*.py`` module and package in it,
or in its sub-folders without ``__init__.py`` (aetherflow-core's ``plugins/steps/`` layout), is
imported under a private name; a module or folder whose name starts with ``_`` is private and is
reported as skipped unless a loaded plugin imported it. A plugin that fails to import is recorded
with its error and does not stop anything that does not need it; a duplicate step or connector
name is a ``PluginError`` naming both sources.

Entry point cache
-----------------
Given a ``cache_dir``, what ``importlib.metadata.entry_points(group=GROUP)`` returned (each entry
point's name and value, the module and attribute path importlib.metadata parsed from the value,
its distribution's name and version) is remembered in ``cache_dir/entry-points.json`` (``0600``,
directories ``0700``, written atomically), and a later load with the same key does not import
``importlib.metadata`` (12-40 ms, docs/performance.md). The key is the cache format, the
aetherflow version, the interpreter (``sys.executable``, ``sys.version``, ``sys.prefix``) and, for
each ``sys.path`` entry in order, the entry, its absolute path and ``os.stat`` of it
(``st_mtime_ns``, ``st_ctime_ns``, ``st_ino``, ``st_size``; a marker when it cannot be stat'ed).
Installers create and remove ``*.dist-info`` directories, which changes the mtime of the
directory holding them, so installing, removing or upgrading a distribution changes the key.
``*.egg-info`` (and an ``.egg``'s ``EGG-INFO``), which ``setup.py develop`` rewrites in place, are
watched individually: the stat of the directory, its ``entry_points.txt`` and ``PKG-INFO`` are part
of the key too. Not cached: when a finder other than ``PathFinder`` on ``sys.meta_path`` provides
distributions, when a ``sys.path`` entry is not a string, when importlib.metadata cannot parse an
entry point's value, or when a stat'ed mtime is less than two seconds old or in the future (on a
filesystem with coarse timestamps a further change could keep it). The stats are taken before the
lookup, so a change racing it changes the key of the next load. On a hit each entry point is
loaded the way ``EntryPoint.load`` does (``import_module``, then ``getattr`` along the attribute
path), and errors are reported as for a fresh one. Best effort: an unreadable, corrupt or foreign
(other owner, group/world-writable) cache file is a miss, a failed write is ignored; deleting the
file is always safe.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from aetherflow import __version__
from aetherflow.errors import PluginError
from aetherflow.events import OBSERVER_MARK
from aetherflow.registry import Registry

GROUP = "aetherflow.plugins"
CACHE_FILE = "entry-points.json"
_CACHE_FORMAT = 2
#: a stat'ed mtime newer than this (ns) is "racy": a further change might not change it
_RACY_NS = 2_000_000_000


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
    #: what a plugin folder holds and was not loaded (see ``_load_path``)
    warnings: list[str] = field(default_factory=list)

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
    cache_dir: Path | None = None,
) -> LoadedPlugins:
    """Load built-ins, entry points (``entry_points`` if given, else the installed ones, through
    the cache in ``cache_dir`` when one is given) and plugin folders into ``registry``."""
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
        if entry_points is not None:
            eps: Iterable[Any] = entry_points
        elif cache_dir is not None:
            eps = _cached_entry_points(cache_dir / CACHE_FILE)
        else:
            eps = _entry_points()
        for ep in eps:
            out.plugins.append(_load_entry_point(reg, ep, out.observers))
    seen: set[Path] = set()
    for p in plugin_paths:
        # the same folder named twice (--plugin-path and AETHERFLOW_PLUGIN_PATHS, or the paths a
        # run recorded plus the current ones on resume) is loaded once, not reported as a clash
        if p and Path(p).resolve() not in seen:
            seen.add(Path(p).resolve())
            out.plugins.extend(_load_path(reg, Path(p), out.observers, out.warnings))
    return out


def _entry_points() -> list[Any]:
    """The installed entry points of :data:`GROUP`, as ``importlib.metadata`` finds them."""
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def _foreign_distribution_finder() -> bool:
    """A finder other than ``PathFinder`` on ``sys.meta_path`` provides distributions: the cache
    key (``sys.path`` directories) cannot tell when they change."""
    from importlib.machinery import PathFinder

    return any(f is not PathFinder and getattr(f, "find_distributions", None) is not None for f in sys.meta_path)


# ---------------------------------------------------------------------------------------------
# the entry point cache (see the module docstring)


@dataclass(frozen=True, slots=True)
class CachedDistribution:
    name: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class CachedEntryPoint:
    """An entry point read from the cache: what ``_load_entry_point`` uses of an ``EntryPoint``,
    with the module and attribute path ``importlib.metadata`` parsed from its value."""

    name: str
    value: str
    module: str
    attr: str | None
    dist: CachedDistribution
    group: str = GROUP

    def load(self) -> Any:
        """As ``EntryPoint.load``: import the module, then walk the attribute path."""
        module = importlib.import_module(self.module)
        return functools.reduce(getattr, (self.attr or "").split(".") if self.attr else (), module)


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return [-1]
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size]


def _path_key() -> dict[str, Any] | None:
    """The key for the current interpreter and ``sys.path``; ``None`` when it cannot be cached."""
    if _foreign_distribution_finder():
        return None
    if not all(isinstance(entry, str) for entry in sys.path):
        return None
    # "" and relative entries are relative to the working directory, as for the import system
    entries = [[entry, os.path.abspath(entry), _stat(os.path.abspath(entry))] for entry in sys.path]
    return {"format": _CACHE_FORMAT, "aetherflow": __version__,
            "python": [sys.executable, sys.version, sys.prefix], "sys_path": entries}


def _metadata_stats(path: str) -> list[Any]:
    return [path, _stat(path), _stat(os.path.join(path, "entry_points.txt")), _stat(os.path.join(path, "PKG-INFO"))]


def _watch_list(key: dict[str, Any]) -> list[list[Any]]:
    """Metadata that may be rewritten in place (``*.egg-info``, an ``.egg``'s ``EGG-INFO``) in
    the ``sys.path`` directories of ``key``, each with its stat and those of the files read."""
    out: list[list[Any]] = []
    for _entry, root, _st in key["sys_path"]:
        is_egg = os.path.basename(root).lower().endswith(".egg")
        try:
            with os.scandir(root) as it:
                names = sorted(e.name for e in it)
        except OSError:  # not a directory (a zip file: its own stat covers it), or unreadable
            continue
        for name in names:
            low = name.lower()
            if low.endswith(".egg-info") or (is_egg and low == "egg-info"):
                out.append(_metadata_stats(os.path.join(root, name)))
    return out


def _racy(key: dict[str, Any], watch: list[list[Any]]) -> bool:
    """A stat'ed mtime is recent (or in the future): on a filesystem with coarse timestamps a
    further change could leave it as it is, so such a key is not remembered."""
    stats = [st for _e, _a, st in key["sys_path"]] + [st for _p, *sts in watch for st in sts]
    limit = time.time_ns() - _RACY_NS
    return any(st[0] > limit for st in stats if len(st) > 1)


def _read_cache(path: Path, key: dict[str, Any]) -> list[CachedEntryPoint] | None:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None  # not ours, or writable by others: it names modules to import
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    watch, eps = doc.get("watch"), doc.get("entry_points")
    if not isinstance(watch, list) or not all(isinstance(w, list) and w and isinstance(w[0], str) for w in watch):
        return None
    if [_metadata_stats(w[0]) for w in watch] != watch or not isinstance(eps, list):
        return None
    out: list[CachedEntryPoint] = []
    for ep in eps:
        if not (isinstance(ep, dict) and all(isinstance(ep.get(k), str) for k in ("name", "value", "module"))):
            return None
        if not all(ep.get(k) is None or isinstance(ep.get(k), str) for k in ("attr", "dist", "version")):
            return None
        out.append(CachedEntryPoint(ep["name"], ep["value"], ep["module"], ep.get("attr"),
                                    CachedDistribution(ep.get("dist"), ep.get("version"))))
    return out


def _write_cache(path: Path, doc: dict[str, Any]) -> None:
    import tempfile

    try:
        missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
        for d in reversed(missing):  # mkdir's mode applies to the last one only with parents=True
            d.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-points.", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError):
        pass  # a cache: never fails a command


def _cached_entry_points(path: Path) -> list[Any]:
    """The installed entry points of :data:`GROUP`: from the cache file ``path`` when its key
    matches, else from ``importlib.metadata`` (and remembered when they can be)."""
    key = _path_key()
    if key is None:
        return _entry_points()
    hit = _read_cache(path, key)
    if hit is not None:
        return hit
    watch = _watch_list(key)  # stat'ed before the lookup: a change during it changes the next key
    eps = _entry_points()
    # importlib.metadata's own parse of each value (``EntryPoint.pattern``): a value it cannot
    # parse is not cached, so loading it again reports the same error
    parsed = [ep.pattern.match(ep.value) if isinstance(ep.value, str) else None for ep in eps]
    if not _racy(key, watch) and all(parsed):
        rows = [{"name": ep.name, "value": ep.value, "module": m.group("module"), "attr": m.group("attr"),
                 "dist": getattr(getattr(ep, "dist", None), "name", None),
                 "version": getattr(getattr(ep, "dist", None), "version", None)} for ep, m in zip(eps, parsed, strict=True) if m]
        _write_cache(path, {"key": key, "watch": watch, "entry_points": rows})
    return eps


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
            hook = getattr(obj, "register", None)
            if callable(hook) and not isinstance(hook, type):  # aetherflow-core calls a module's register()
                _call_register(hook, _RegistrarFacade(reg, source, observers))
        elif callable(obj):
            if not isinstance(obj, type):
                _call_register(obj, _RegistrarFacade(reg, source, observers))
            for mod in _imported_under(_package_of(ep.module)):
                reg.collect_module(mod, source)
                _collect_observers(mod, observers)
        else:
            raise PluginError(f"entry point {ep.name} = {ep.value} is neither a module nor a callable", code="plugin.bad_entry_point")
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001
        return PluginInfo(name=ep.name, source="entry point", distribution=dist, version=version, error=f"{type(exc).__name__}: {exc}")
    steps, conns = reg.registered_by(source)
    return PluginInfo(name=ep.name, source="entry point", distribution=dist, version=version, steps=steps, connectors=conns)


def _call_register(hook: Any, registrar: _RegistrarFacade) -> None:
    """Call a plugin's ``register``: with the registrar when it takes a positional parameter
    (``register(registry)``), without when it takes none (``register()``, aetherflow-core)."""
    import inspect

    params = inspect.signature(hook).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    if any(p.kind in positional for p in params):
        hook(registrar)
    else:
        hook()


def _package_of(module_name: str) -> str:
    """The package a module belongs to: itself when it is a package (or a top-level module),
    else its parent (``acme.plugin`` → ``acme``), whose imported modules hold its classes."""
    mod = sys.modules.get(module_name)
    if mod is not None and hasattr(mod, "__path__"):
        return module_name
    return module_name.rpartition(".")[0] or module_name


def _imported_under(name: str) -> list[ModuleType]:
    """The modules ``name`` and ``name.*`` imported so far, in name order."""
    return [m for n, m in sorted(sys.modules.items())
            if (n == name or n.startswith(name + ".")) and isinstance(m, ModuleType)]


def _load_path(reg: Registry, folder: Path, observers: list[Any], warnings: list[str]) -> list[PluginInfo]:
    if not folder.is_dir():
        return [PluginInfo(name=str(folder), source="path", error="not a directory")]
    root = str(folder.resolve())
    if root not in sys.path:  # at the end: a plugin module never shadows an installed one
        sys.path.append(root)
    candidates, private = _folder_modules(folder)
    infos: list[PluginInfo] = []
    for cand in candidates:
        rel = cand.relative_to(folder)
        name = ".".join(rel.with_suffix("").parts if cand.suffix == ".py" else rel.parts)
        modname = f"aetherflow_local_plugins.{abs(hash(root))}.{name}"
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
                _call_register(register, _RegistrarFacade(reg, source, observers))
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(modname, None)
            infos.append(PluginInfo(name=str(cand), source="path", error=f"{type(exc).__name__}: {exc}"))
            continue
        steps, conns = reg.registered_by(source)
        infos.append(PluginInfo(name=str(cand), source="path", steps=steps, connectors=conns))
    if private:
        imported = {Path(f).resolve() for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)}
        for p in private:
            files = [p.resolve()] if p.is_file() else [f.resolve() for f in p.rglob("*.py")]
            if not any(f in imported for f in files):
                warnings.append(f"plugin folder {folder}: skipped {p.relative_to(folder)}: a name starting with '_' "
                                "is private to the plugins that import it, and none did")
    return infos


def _folder_modules(folder: Path) -> tuple[list[Path], list[Path]]:
    """(modules and packages to import, private ``_*.py`` files and ``_*`` folders) in a plugin
    folder and its sub-folders without ``__init__.py``. Hidden names, ``__pycache__`` and
    ``__init__.py`` (a folder marked as a package, as aetherflow-core's demo does) are ignored."""
    modules: list[Path] = []
    private: list[Path] = []
    seen: set[Path] = set()

    def walk(d: Path) -> None:
        if d.resolve() in seen:  # a symbolic link back up the tree
            return
        seen.add(d.resolve())
        for p in sorted(d.iterdir()):
            if p.name.startswith(".") or p.name in ("__pycache__", "__init__.py"):
                continue
            is_dir, is_py = p.is_dir(), p.suffix == ".py" and p.is_file()
            if not (is_dir or is_py):
                continue
            if p.name.startswith("_"):
                private.append(p)
            elif is_py or (p / "__init__.py").is_file():
                modules.append(p)
            else:
                walk(p)

    walk(folder)
    return modules, private


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
