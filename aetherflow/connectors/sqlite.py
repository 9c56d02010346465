"""``db:sqlite3`` (alias ``db:sqlite``): a SQLite database file through the stdlib driver.

Config: ``path`` (or ``database``) — a file path used as given (relative paths are relative to
the directory aetherflow runs in), or ``:memory:``; ``url`` — a ``sqlite:///relative.db`` /
``sqlite:////absolute.db`` URL (what ``db:sqlalchemy`` passes on). Options: ``timeout``
(seconds to wait for a locked database, default 30), ``read_only`` (open with ``mode=ro``;
the file must exist). Placeholders: ``?`` with a list, ``:name`` with a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aetherflow.api import ConnectorError, register_connector
from aetherflow.connectors.base import check_keys
from aetherflow.connectors.dbapi import SqlConnector

CONFIG_KEYS = frozenset({"path", "database", "url"})
OPTION_KEYS = frozenset({"timeout", "read_only"})


def path_from_url(name: str, url: str) -> str:
    """``sqlite:///rel.db`` → ``rel.db``, ``sqlite:////abs.db`` → ``/abs.db``, ``sqlite://`` → memory."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
        raise ConnectorError(f"resource '{name}': url must start with sqlite://", code="connector.bad_config")
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ConnectorError(
            f"resource '{name}': sqlite url needs three slashes (sqlite:///relative.db or sqlite:////absolute.db)",
            code="connector.bad_config",
        )
    return rest[1:].split("?", 1)[0]


@register_connector("db", "sqlite3", aliases=["sqlite"])
class SqliteConnector(SqlConnector):
    """SQLite database file (stdlib sqlite3)."""

    product = "SQLite"

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        check_keys(name, "config", config, CONFIG_KEYS)
        check_keys(name, "options", options, OPTION_KEYS)
        given = [k for k in ("path", "database", "url") if config.get(k) not in (None, "")]
        if len(given) != 1:
            raise ConnectorError(
                f"resource '{name}': db:sqlite3 needs exactly one of config.path, config.database or config.url",
                code="connector.bad_config",
            )
        key = given[0]
        self.path = path_from_url(name, str(config["url"])) if key == "url" else str(config[key])
        try:
            self.timeout = float(options.get("timeout", 30))
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"resource '{name}': options.timeout must be a number of seconds", code="connector.bad_config") from exc
        self.read_only = bool(options.get("read_only", False))

    def _connect(self) -> Any:
        import sqlite3

        try:
            if self.read_only and self.path != ":memory:":
                uri = Path(self.path).absolute().as_uri() + "?mode=ro"
                return sqlite3.connect(uri, uri=True, timeout=self.timeout, check_same_thread=False)
            return sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConnectorError(
                f"resource '{self.name}': cannot open SQLite database {self.path}: {self._describe_error(exc)}",
                code="db.connect",
            ) from exc

    def _is_driver_error(self, exc: BaseException) -> bool:
        import sqlite3

        return isinstance(exc, sqlite3.Error)

    def _begin(self, conn: Any, cur: Any) -> None:
        # sqlite3 opens a transaction only before INSERT/UPDATE/DELETE: CREATE TABLE and
        # SAVEPOINT would otherwise run (and commit) on their own
        if not conn.in_transaction:
            cur.execute("BEGIN")
