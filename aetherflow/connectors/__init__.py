"""Built-in connectors, one module per ``kind:driver`` family."""

#: connector ``kind:driver`` (and each alias) -> the built-in module that registers it; imported
#: on first lookup like the built-in step modules
BUILTIN_CONNECTORS: dict[str, str] = {
    "db:sqlite3": "aetherflow.connectors.sqlite",
    "db:sqlite": "aetherflow.connectors.sqlite",
    "db:postgres": "aetherflow.connectors.postgres",
    "db:psycopg": "aetherflow.connectors.postgres",
    "db:postgresql": "aetherflow.connectors.postgres",
    "db:sqlalchemy": "aetherflow.connectors.dburl",
    "rest:http": "aetherflow.connectors.http",
    "rest:httpx": "aetherflow.connectors.http",
    "rest:requests": "aetherflow.connectors.http",
    "mail:smtp": "aetherflow.connectors.smtp",
    "mail:smtplib": "aetherflow.connectors.smtp",
    "archive:zipfile": "aetherflow.connectors.archive",
    "archive:zip": "aetherflow.connectors.archive",
}

#: the modules of that table, in import order
BUILTIN_CONNECTOR_MODULES: tuple[str, ...] = tuple(dict.fromkeys(BUILTIN_CONNECTORS.values()))
