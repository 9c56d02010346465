"""Connector plumbing: a lazy, per-run mapping from resource name to connector instance.

A connector is built on first ``ctx.connectors["name"]`` from the resolved resource and the
registered ``kind:driver`` class, cached for the run, and closed at run end (a failing close is
only a warning). Driver errors are translated to ``ConnectorError`` at the boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aetherflow.errors import ConnectorError
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
                conn = ct.cls(name, res.config, res.options)
            except ConnectorError:
                raise
            except Exception as exc:
                raise ConnectorError(f"resource '{name}': cannot build {ct.key} connector: {exc}") from exc
            self._built[name] = conn
            return conn

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

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
