"""Connector plumbing: a lazy, per-run mapping from resource name to connector instance.

A connector is built on first ``ctx.connectors["name"]`` from the resolved resource and the
registered ``kind:driver`` class, cached for the run, and closed at run end (a failing close is
only a warning). Driver errors are translated to ``ConnectorError`` at the boundary.

Constructor shapes (``build_connector``): a connector class's ``__init__`` is read once, when
the connector is built, and called in the shape it declares:

* ``(name, config, options)`` — ``aetherflow.api.Connector``; read-only mappings;
* ``(init)`` — one required parameter of another name (or annotated ``ConnectorInit``), as
  aetherflow-core's ``ConnectorBase`` subclasses take it: a :class:`ConnectorInit` with plain
  dict copies of config and options (``ctx`` is ``None``: a connector is shared by the steps
  of the run);
* any parameters among ``name``, ``kind``, ``driver``, ``config``, ``options``, ``ctx``,
  positional or keyword-only, ``config`` among them — aetherflow-core's ``(config, options)``
  and its documented ``(*, config, options)``: passed by name, plain dict copies;
* no parameters: built without arguments, then given ``name``, ``kind``, ``driver``,
  ``config`` and ``options`` attributes it did not set.

Anything else is a ``ConnectorError`` (``connector.bad_init``) naming the signature found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetherflow.errors import ConnectorError
from aetherflow.model import freeze, thaw
from aetherflow.registry import Registry


def check_keys(name: str, part: str, given: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Refuse unknown keys, so a typo is not silently ignored."""
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConnectorError(
            f"resource '{name}': unknown {part} key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})",
            code="connector.bad_config",
        )


if TYPE_CHECKING:
    import ssl


def tls_context(resource: str, verify: bool | str) -> ssl.SSLContext:
    """TLS settings shared by network connectors: verify with the system trust store (default),
    with a CA bundle file (``verify: /path/ca.pem``), or not at all (``verify: false``)."""
    import ssl

    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectorError(f"resource '{resource}': cannot load CA bundle {verify}: {exc}",
                                 code="connector.bad_config") from exc
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class ConnectorInit:
    """What an aetherflow-core style connector's ``__init__(self, init)`` receives: the resource
    name, kind and driver as written in the flow, its resolved config and options (plain dicts,
    the connector's own copies) and ``ctx`` (``None``: a connector is shared by the run's steps)."""

    name: str
    kind: str
    driver: str
    config: dict[str, Any]
    options: dict[str, Any]
    ctx: Any = None


class ConnectorBase:
    """aetherflow-core's connector base class: ``__init__(self, init: ConnectorInit)`` keeps
    ``name``, ``kind``, ``driver``, ``config``, ``options`` and ``ctx``; ``close()`` releases
    what the connector opened (called once at run end); usable as a context manager."""

    def __init__(self, init: ConnectorInit) -> None:
        self.name = init.name
        self.kind = init.kind
        self.driver = init.driver
        self.config = init.config
        self.options = init.options
        self.ctx = init.ctx

    def close(self) -> None:
        """Release resources. Called once at run end; an exception here is only a warning."""

    def __enter__(self) -> ConnectorBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BY_NAME = ("name", "kind", "driver", "config", "options", "ctx")


def build_connector(cls: Any, name: str, kind: str, driver: str, config: Mapping[str, Any],
                    options: Mapping[str, Any]) -> Any:
    """An instance of ``cls`` for resource ``name``, built in the shape its ``__init__``
    declares (see the module docstring)."""
    import inspect

    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError) as exc:  # a class inspect cannot read (a C extension type)
        raise ConnectorError(f"resource '{name}': cannot read the constructor of {cls.__qualname__}: {exc}",
                             code="connector.bad_init") from exc
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    named = [p for p in params if p.kind not in variadic]
    required = [p for p in named if p.default is inspect.Parameter.empty]
    values = {"name": name, "kind": kind, "driver": driver, "config": thaw(config), "options": thaw(options), "ctx": None}
    if [p.name for p in named] == ["name", "config", "options"] and all(p.kind != p.KEYWORD_ONLY for p in named):
        return cls(name, config, options)  # aetherflow.api.Connector: read-only mappings
    if len(required) == 1 and (required[0].name not in _BY_NAME or required[0].annotation in (ConnectorInit, "ConnectorInit")):
        return cls(ConnectorInit(name, kind, driver, values["config"], values["options"]))
    if named and "config" in {p.name for p in named} and all(p.name in _BY_NAME for p in named):
        args = [values[p.name] for p in named if p.kind == p.POSITIONAL_ONLY]
        kwargs = {p.name: values[p.name] for p in named if p.kind != p.POSITIONAL_ONLY}
        return cls(*args, **kwargs)
    if not named and any(p.kind in variadic for p in params):  # (*args, **kwargs): whatever the base takes
        if issubclass(cls, ConnectorBase):
            return cls(ConnectorInit(name, kind, driver, values["config"], values["options"]))
        return cls(name, config, options)
    if not params:
        conn = cls()
        for key in ("name", "kind", "driver", "config", "options"):
            if not hasattr(conn, key):
                setattr(conn, key, values[key])
        return conn
    raise ConnectorError(
        f"resource '{name}': connector {cls.__qualname__}{inspect.signature(cls)} takes none of the supported "
        "constructor shapes: (name, config, options), (init: ConnectorInit), (config, options) or (*, config, options)",
        code="connector.bad_init",
    )


class LazyConnectors(Mapping[str, Any]):
    def __init__(self, resources: Mapping[str, Any], registry: Registry, log: logging.Logger) -> None:
        self._resources = resources
        self._registry = registry
        self._log = log
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            conn = self._built.get(name)
            if conn is not None:
                return conn
            res = self._resources.get(name)
            if res is None:
                known = ", ".join(sorted(self._resources)) or "none"
                raise ConnectorError(f"no resource named '{name}' (resources: {known})", code="connector.unknown_resource")
            ct = self._registry.connector(res.kind, res.driver)
            if ct is None:
                known = ", ".join(sorted(self._registry.connectors)) or "none"
                raise ConnectorError(
                    f"resource '{name}': no connector for {res.kind}:{res.driver} (registered: {known})",
                    code="connector.unknown_driver",
                )
            try:
                conn = build_connector(ct.cls, name, res.kind, res.driver, res.config, res.options)
            except ConnectorError:
                raise
            except Exception as exc:
                raise ConnectorError(f"resource '{name}': cannot build {ct.key} connector: {exc}") from exc
            self._built[name] = conn
            return conn

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    @property
    def resources(self) -> Mapping[str, Any]:
        """aetherflow-core's ``ctx.resources``: each resource's resolved kind, driver, config
        and options, read-only."""
        return freeze({name: {"kind": r.kind, "driver": r.driver, "config": r.config, "options": r.options}
                       for name, r in self._resources.items()})

    def of_kind(self, kind: str, name: str) -> Any:
        """The connector of resource ``name``, which must be of ``kind`` (aetherflow-core's
        ``ctx.connectors.get(kind=..., name=...)``, ``.db(name)``, ``.rest(name)``...)."""
        res = self._resources.get(name)
        if res is not None and res.kind != kind:
            raise ConnectorError(f"resource '{name}' is kind {res.kind}, not {kind}", code="connector.wrong_kind")
        return self[name]

    def get(self, key: str | None = None, default: Any = None, *, kind: str | None = None,  # type: ignore[override]
            name: str | None = None, cache: str | None = None) -> Any:
        """``get(name, default)`` as for any mapping; ``get(kind=..., name=...)`` as
        aetherflow-core's connectors had it (``cache`` accepted: connectors are cached per run)."""
        if name is None:
            return super().get(key, default) if key is not None else default
        return self.of_kind(kind, name) if kind is not None else self[name]

    def db(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("db", name)

    def rest(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("rest", name)

    def mail(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("mail", name)

    def archive(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("archive", name)

    def sftp(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("sftp", name)

    def smb(self, name: str, *, cache: str | None = None) -> Any:
        return self.of_kind("smb", name)

    def __len__(self) -> int:
        return len(self._resources)

    def __contains__(self, name: object) -> bool:
        return name in self._resources

    def close_all(self) -> list[str]:
        """Close every connector built; returns warnings for those whose close failed."""
        warnings: list[str] = []
        with self._lock:
            built, self._built = self._built, {}
        for name, conn in built.items():
            close = getattr(conn, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - a failing close is only a warning
                warnings.append(f"connector '{name}' failed to close: {exc}")
                self._log.warning("connector '%s' failed to close: %s", name, exc)
        return warnings
