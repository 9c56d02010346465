"""``db:sqlalchemy``: reference flows name their database by a SQLAlchemy-style ``url``.

One registry key maps to one class, so this small dispatcher reads ``config.url`` and hands
the work to ``db:sqlite3`` (``sqlite://…``) or ``db:postgres`` (``postgresql://…``,
``postgres://…``; a ``+driver`` suffix such as ``postgresql+psycopg2://`` is dropped).
SQLAlchemy itself is not used. Other config keys and the options go to the chosen connector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetherflow.api import Connector, ConnectorError, register_connector
from aetherflow.connectors.dbapi import Row, RowStream, SqlConnector
from aetherflow.connectors.postgres import PostgresConnector
from aetherflow.connectors.sqlite import SqliteConnector


@register_connector("db", "sqlalchemy")
class SqlAlchemyUrlConnector(Connector):
    """SQLAlchemy-style url: sqlite:// → db:sqlite3, postgresql:// → db:postgres."""

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        url = config.get("url")
        if not isinstance(url, str) or "://" not in url:
            raise ConnectorError(
                f"resource '{name}': db:sqlalchemy needs config.url (sqlite:///file.db or postgresql://host/db)",
                code="connector.bad_config",
            )
        scheme, _, rest = url.partition("://")
        dialect = scheme.split("+", 1)[0].lower()
        others = {k: v for k, v in config.items() if k != "url"}
        self.inner: SqlConnector
        if dialect == "sqlite":
            self.inner = SqliteConnector(name, {"url": url, **others}, options)
        elif dialect in ("postgresql", "postgres"):
            self.inner = PostgresConnector(name, {"url": f"postgresql://{rest}", **others}, options)
        else:
            # the scheme alone, never the rest of the url (it may carry a password)
            raise ConnectorError(
                f"resource '{name}': db:sqlalchemy url scheme '{scheme}' is not supported (use sqlite:// or postgresql://)",
                code="connector.bad_config",
            )

    def query(self, sql: str, params: Any = None, *, max_rows: int = 1000) -> tuple[list[str], list[Row]]:
        return self.inner.query(sql, params, max_rows=max_rows)

    def stream(self, sql: str, params: Any = None, *, batch: int = 1000) -> tuple[list[str], RowStream]:
        return self.inner.stream(sql, params, batch=batch)

    def execute(self, sql: str, params: Any = None) -> int:
        return self.inner.execute(sql, params)

    def close(self) -> None:
        self.inner.close()
