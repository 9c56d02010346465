"""``db:postgres`` (aliases ``db:psycopg``, ``db:postgresql``): PostgreSQL through psycopg 3.

psycopg is imported only when a connection is opened (install the ``postgres`` extra).

Config: ``dsn`` (or ``url``) — a libpq connection string or ``postgresql://`` URL — and/or the
fields ``host``, ``port``, ``dbname`` (or ``database``), ``user`` (or ``username``),
``password``, ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, ``application_name``;
fields override the same parameter inside ``dsn``. Options: ``connect_timeout`` (seconds,
default 10), ``application_name`` (default ``aetherflow``).

TLS: when no ``sslmode`` is given (in ``dsn`` or config) and the host is not local (a Unix
socket, ``localhost``, ``127.0.0.1``, ``::1``), the connection uses ``sslmode=verify-full``
with the system trust store (``sslrootcert=system``, or your ``sslrootcert``). Set
``sslmode`` explicitly (``require``, ``prefer``, ``disable``) to opt out.

``stream`` uses a server-side (named) cursor, so a large extract never sits in memory.
Error messages name host, port, database and user, never the password or the DSN.
"""

from __future__ import annotations

import re
import secrets as _secrets
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aetherflow.api import ConnectorError, register_connector
from aetherflow.connectors.base import check_keys
from aetherflow.connectors.dbapi import SqlConnector

FIELD_ALIASES = {"database": "dbname", "username": "user"}
FIELDS = frozenset(
    {"host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name"}
)
CONFIG_KEYS = FIELDS | frozenset({"dsn", "url", *FIELD_ALIASES})
OPTION_KEYS = frozenset({"connect_timeout", "application_name"})
LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})

_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def scrub(text: str, *secrets: str) -> str:
    """Remove passwords (given values, ``password=…`` pairs, ``user:pass@`` in URLs) from text."""
    for s in secrets:
        if s:
            for form in {s, urllib.parse.quote(s, safe=""), urllib.parse.quote(s)}:
                text = text.replace(form, "***")
    text = _PASSWORD_KV.sub(r"\1***", text)
    return _URL_CREDENTIALS.sub(r"\1***@", text)


@register_connector("db", "postgres", aliases=["psycopg", "postgresql"])
class PostgresConnector(SqlConnector):
    """PostgreSQL (psycopg 3); streams through server-side cursors."""

    product = "PostgreSQL"
    placeholder = "%s"

    def __init__(self, name: str, config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        super().__init__(name, config, options)
        check_keys(name, "config", config, CONFIG_KEYS)
        check_keys(name, "options", options, OPTION_KEYS)
        if config.get("dsn") and config.get("url"):
            raise ConnectorError(f"resource '{name}': give config.dsn or config.url, not both", code="connector.bad_config")
        self._dsn = str(config.get("dsn") or config.get("url") or "")
        fields: dict[str, Any] = {}
        for key, value in config.items():
            if key in ("dsn", "url") or value is None:
                continue
            fields[FIELD_ALIASES.get(key, key)] = value
        self._fields = fields
        try:
            self.connect_timeout = int(options.get("connect_timeout", 10))
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"resource '{name}': options.connect_timeout must be a whole number of seconds",
                                 code="connector.bad_config") from exc
        self.application_name = str(options.get("application_name", "aetherflow"))
        self._password = ""
        self._where = "PostgreSQL"

    def _params(self) -> dict[str, Any]:
        import psycopg
        from psycopg import conninfo, pq

        params: dict[str, Any] = {}
        if self._dsn:
            try:
                params.update(conninfo.conninfo_to_dict(self._dsn))
            except psycopg.Error as exc:
                # the driver quotes the offending part of the DSN, which may be the password
                raise ConnectorError(
                    f"resource '{self.name}': config.dsn is not a valid PostgreSQL connection string or URL",
                    code="connector.bad_config",
                    hint="percent-encode special characters in URL passwords, or pass password as its own field",
                ) from exc
        params.update({k: str(v) for k, v in self._fields.items()})
        params.setdefault("connect_timeout", str(self.connect_timeout))
        params.setdefault("application_name", self.application_name)
        host = str(params.get("host", ""))
        if "sslmode" not in params and not _is_local(host):
            params["sslmode"] = "verify-full"
            if "sslrootcert" not in params and pq.version() >= 160000:
                params["sslrootcert"] = "system"
        self._password = str(params.get("password", ""))
        self._where = (
            f"PostgreSQL {host or 'local socket'}:{params.get('port', '5432')}/{params.get('dbname', '?')}"
            f" as {params.get('user', '(default user)')}"
        )
        return params

    def _connect(self) -> Any:
        import psycopg

        params = self._params()
        try:
            return psycopg.connect(**params)
        except psycopg.Error as exc:
            raise ConnectorError(
                f"resource '{self.name}': cannot connect to {self._where}: {self._describe_error(exc)}",
                code="db.connect",
            ) from exc

    def _is_driver_error(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.Error)

    def _describe_error(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        if len(text) > 500:
            text = text[:500] + "…"
        text = scrub(text, self._password, self._dsn)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _open_stream_cursor(self, conn: Any, batch: int) -> Any:
        cur = conn.cursor(name=f"aetherflow_{_secrets.token_hex(6)}")
        cur.itersize = batch
        return cur


def _is_local(host: str) -> bool:
    return all(h.strip() in LOCAL_HOSTS or h.strip().startswith("/") for h in host.split(","))
