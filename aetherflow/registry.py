"""Step and connector registries.

``register_step`` and ``register_connector`` only *mark* a class with metadata; a registry
instance collects marked classes from modules (``collect_module``). There is no module-level
registry: the CLI builds one per process, tests build their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

from aetherflow.errors import PluginError

T = TypeVar("T", bound=type)

STEP_MARK = "__aetherflow_step__"
CONNECTOR_MARK = "__aetherflow_connector__"
DECODER_MARK = "__aetherflow_decoder__"

#: default outcomes every step type has; more may be declared at registration
DEFAULT_OUTCOMES = ("success", "skipped")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepMeta:
    name: str
    inputs_schema: Mapping[str, Any] | None = None
    outcomes: tuple[str, ...] = ()
    waits: bool = False  # may return WAITING (not allowed inside with_lock)
    description: str | None = None
    #: name of an input whose list of strings adds outcomes (wait_for_event: "events")
    outcomes_input: str | None = None
    #: called in the engine's thread, without the worker hand-off: for steps that return at
    #: once and never block (a timeout or a signal cannot interrupt them)
    inline: bool = False
    #: inputs that hold nested step specs (a mapping, or a list of them) the step runs itself
    #: through ``ctx.invoke``: checked like the flow's own steps; none of them may wait
    nested: tuple[str, ...] = ()
    #: the step type's default retry policy (fields of a flow's ``retry:``); a flow's own
    #: ``retry:`` fields override it one by one
    retry: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorMeta:
    kind: str
    driver: str
    aliases: tuple[str, ...] = ()
    description: str | None = None


_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08  # code object flags (the values of inspect.CO_*)


def _summary(doc: str | None) -> str | None:
    """The first paragraph of a docstring as one line (a summary wrapped over several lines
    of source is not cut mid-sentence)."""
    words: list[str] = []
    for line in (doc or "").splitlines():
        if not line.strip():
            if words:
                break
            continue
        words.extend(line.split())
    return " ".join(words) or None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepType:
    """A registered step type: its class, metadata and where it came from."""

    name: str
    cls: type
    meta: StepMeta
    source: str  # "builtin (aetherflow.steps.control)", or where a plugin came from

    @property
    def builtin(self) -> bool:
        """Shipped with aetherflow (``plugins.load`` gives built-ins the source ``builtin (module)``)."""
        return self.source.startswith("builtin (")

    @property
    def outcomes(self) -> tuple[str, ...]:
        extra = tuple(o for o in self.meta.outcomes if o not in DEFAULT_OUTCOMES)
        return DEFAULT_OUTCOMES + extra

    def outcomes_for(self, inputs: Mapping[str, Any]) -> tuple[str, ...]:
        """Declared outcomes plus those named by ``outcomes_input`` in these inputs."""
        base = self.outcomes
        key = self.meta.outcomes_input
        if key:
            more = inputs.get(key)
            if isinstance(more, (list, tuple)):
                base = base + tuple(str(m) for m in more if str(m) not in base)
        return base

    @property
    def legacy_run(self) -> bool:
        """True when ``run(self)`` takes no ctx/inputs (aetherflow-core style)."""
        run = getattr(self.cls, "run", None)
        if run is None:
            return False
        code = getattr(run, "__code__", None)
        if code is None or hasattr(run, "__wrapped__") or hasattr(run, "__signature__"):
            import inspect  # not a plain function: let inspect work it out

            params = [p.name for p in inspect.signature(run).parameters.values() if p.name != "self"]
        else:  # a plain function's parameters, *args and **kwargs included (no inspect import)
            count = code.co_argcount + code.co_kwonlyargcount
            count += bool(code.co_flags & _CO_VARARGS) + bool(code.co_flags & _CO_VARKEYWORDS)
            params = [n for n in code.co_varnames[:count] if n != "self"]
        return len(params) == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorType:
    kind: str
    driver: str
    cls: type
    meta: ConnectorMeta
    source: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.driver}"


def register_step(
    name: str,
    *,
    inputs_schema: Mapping[str, Any] | None = None,
    outcomes: Sequence[str] = (),
    waits: bool = False,
    description: str | None = None,
    outcomes_input: str | None = None,
    inline: bool = False,
    nested: Sequence[str] = (),
    retry: Mapping[str, Any] | None = None,
) -> Callable[[T], T]:
    """Mark a ``Step`` subclass as step type ``name``. Collected by a ``Registry``.

    ``outcomes`` adds outcome names to ``success``/``skipped``; ``waits`` says the step may
    return WAITING; ``outcomes_input`` names an input listing further outcomes. ``inline``
    runs the step in the engine's own thread (no worker hand-off): only for steps that return
    at once and never block, since neither ``timeout_seconds`` nor a signal can stop them.
    ``retry`` is the type's default retry policy, with the fields of a flow's ``retry:``
    (``{"max_attempts": 3, "backoff": "constant"}``); the flow's own fields win."""

    def mark(cls: T) -> T:
        setattr(
            cls,
            STEP_MARK,
            StepMeta(
                name=name,
                inputs_schema=inputs_schema,
                outcomes=tuple(outcomes),
                waits=waits,
                description=description or _summary(cls.__dict__.get("__doc__")),
                outcomes_input=outcomes_input,
                inline=inline,
                nested=tuple(nested),
                retry=None if retry is None else MappingProxyType(dict(retry)),
            ),
        )
        return cls

    return mark


def register_decoder(name: str) -> Callable[[Callable[[str], str]], Callable[[str], str]]:
    """Mark a function ``fn(value: str) -> str`` as the resource-field decoder ``name``
    (used as ``decode: {config: {password: NAME}}``). Decoded values are treated as secrets."""

    def mark(fn: Callable[[str], str]) -> Callable[[str], str]:
        setattr(fn, DECODER_MARK, name)
        return fn

    return mark


def register_connector(
    kind: str, driver: str, *, aliases: Sequence[str] = (), description: str | None = None
) -> Callable[[T], T]:
    """Mark a ``Connector`` class as the implementation of ``kind:driver``."""

    def mark(cls: T) -> T:
        setattr(
            cls,
            CONNECTOR_MARK,
            ConnectorMeta(
                kind=kind,
                driver=driver,
                aliases=tuple(aliases),
                description=description or _summary(cls.__dict__.get("__doc__")),
            ),
        )
        return cls

    return mark


class Registry:
    """Step types and connector types known to one process (or one test).

    Built-in modules may be *deferred* (``defer_module``): their names are known, the module is
    imported and collected the first time one of them is looked up (``step``, ``connector``), a
    plugin registers the same name, or the full ``steps`` / ``connectors`` mapping is read.
    ``loaded_steps`` is what is registered so far, without importing anything."""

    __slots__ = ("_connectors", "_deferred", "_deferred_modules", "_steps", "aliases", "decoder_sources", "decoders")

    def __init__(self) -> None:
        self._steps: dict[str, StepType] = {}
        self._connectors: dict[str, ConnectorType] = {}
        self._deferred: dict[str, tuple[str, str]] = {}  # name or connector key -> (module, source)
        self._deferred_modules: list[str] = []  # every module ever deferred, loaded or not
        self.aliases: dict[str, str] = {}
        self.decoders: dict[str, Any] = {}
        self.decoder_sources: dict[str, str] = {}

    @property
    def steps(self) -> dict[str, StepType]:
        self.load_deferred()
        return self._steps

    @property
    def connectors(self) -> dict[str, ConnectorType]:
        self.load_deferred()
        return self._connectors

    @property
    def loaded_steps(self) -> Mapping[str, StepType]:
        return self._steps

    def registered_by(self, source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Step names and connector keys registered so far by ``source`` (imports nothing)."""
        return (tuple(sorted(n for n, st in self._steps.items() if st.source == source)),
                tuple(sorted(k for k, ct in self._connectors.items() if ct.source == source)))

    def defer_module(self, module: str, source: str, *, steps: Sequence[str] = (), connectors: Sequence[str] = ()) -> None:
        """Know the step types ``steps`` and the ``kind:driver`` keys (aliases included)
        ``connectors`` as provided by ``module``, to be imported and collected on first use."""
        self._deferred_modules.append(module)
        for name in steps:
            self._deferred[f"step:{name}"] = (module, source)
        for key in connectors:
            self._deferred[key] = (module, source)

    def deferred_files_stamp(self) -> str:
        """Size and mtime of the deferred modules' source files (aetherflow's own modules), so a
        cache can tell an edited built-in without importing it."""
        import os
        from pathlib import Path

        root = Path(__file__).resolve().parent
        parts = []
        for mod in self._deferred_modules:
            head, _, rest = mod.partition(".")
            if head != "aetherflow" or not rest:
                continue
            try:
                st = os.stat(root.joinpath(*rest.split(".")).with_suffix(".py"))
            except OSError:
                parts.append(f"{mod}:?")
                continue
            parts.append(f"{mod}:{st.st_size}:{st.st_mtime_ns}")
        return ",".join(parts)

    def load_deferred(self) -> None:
        while self._deferred:
            self._load(next(iter(self._deferred.values())))

    def _load(self, entry: tuple[str, str]) -> None:
        import importlib

        module, source = entry
        for key in [k for k, v in self._deferred.items() if v == entry]:
            del self._deferred[key]
        self.collect_module(importlib.import_module(module), source)

    def _load_if_deferred(self, key: str) -> None:
        entry = self._deferred.get(key)
        if entry is not None:
            self._load(entry)

    def add_decoder(self, fn: Callable[[str], str], source: str) -> str:
        name: str = getattr(fn, DECODER_MARK)
        if name == "base64" or (name in self.decoders and self.decoders[name] is not fn):
            first = "builtin" if name == "base64" else self.decoder_sources[name]
            raise PluginError(f"decoder '{name}' is registered twice: by {first} and by {source}",
                              code="plugin.duplicate_decoder")
        self.decoders[name] = fn
        self.decoder_sources[name] = source
        return name

    def add_step(self, cls: type, source: str) -> StepType:
        meta: StepMeta = getattr(cls, STEP_MARK)
        self._load_if_deferred(f"step:{meta.name}")  # a built-in of that name: the clash names it
        existing = self._steps.get(meta.name)
        if existing is not None:
            if existing.cls is cls:
                return existing
            raise PluginError(
                f"step type '{meta.name}' is registered twice: by {existing.source} and by {source}",
                code="plugin.duplicate_step",
                hint="rename one of the step types; a plugin cannot replace another's step",
            )
        st = StepType(name=meta.name, cls=cls, meta=meta, source=source)
        self._steps[meta.name] = st
        return st

    def add_connector(self, cls: type, source: str) -> ConnectorType:
        meta: ConnectorMeta = getattr(cls, CONNECTOR_MARK)
        ct = ConnectorType(kind=meta.kind, driver=meta.driver, cls=cls, meta=meta, source=source)
        for key in (ct.key, *(f"{meta.kind}:{a}" for a in meta.aliases)):
            self._load_if_deferred(key)
            existing = self._connectors.get(key) or self._connectors.get(self.aliases.get(key, ""))
            if existing is not None and existing.cls is not cls:
                raise PluginError(
                    f"connector '{key}' is registered twice: by {existing.source} and by {source}",
                    code="plugin.duplicate_connector",
                )
        self._connectors[ct.key] = ct
        for a in meta.aliases:
            self.aliases[f"{meta.kind}:{a}"] = ct.key
        return ct

    def collect_module(self, module: ModuleType, source: str) -> tuple[list[str], list[str]]:
        """Add every marked class defined in ``module`` (or its submodules' re-exports
        whose ``__module__`` starts with the module name). Returns (steps, connectors)."""
        steps: list[str] = []
        connectors: list[str] = []
        prefix = module.__name__
        for obj in list(vars(module).values()):
            if callable(obj) and not isinstance(obj, type) and isinstance(getattr(obj, DECODER_MARK, None), str):
                if getattr(obj, "__module__", "").startswith(prefix):
                    self.add_decoder(obj, source)
                continue
            if not isinstance(obj, type):
                continue
            if not getattr(obj, "__module__", "").startswith(prefix):
                continue
            if STEP_MARK in vars(obj):
                steps.append(self.add_step(obj, source).name)
            if CONNECTOR_MARK in vars(obj):
                connectors.append(self.add_connector(obj, source).key)
        return steps, connectors

    def step(self, name: str) -> StepType | None:
        found = self._steps.get(name)
        if found is None and f"step:{name}" in self._deferred:
            self._load_if_deferred(f"step:{name}")
            found = self._steps.get(name)
        return found

    def connector(self, kind: str, driver: str) -> ConnectorType | None:
        key = f"{kind}:{driver}"
        self._load_if_deferred(key)
        return self._connectors.get(key) or self._connectors.get(self.aliases.get(key, ""))
