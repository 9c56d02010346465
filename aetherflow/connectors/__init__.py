"""Built-in connectors, one module per ``kind:driver`` family."""

BUILTIN_CONNECTOR_MODULES: tuple[str, ...] = (
    "aetherflow.connectors.sqlite",
    "aetherflow.connectors.postgres",
    "aetherflow.connectors.dburl",
    "aetherflow.connectors.http",
    "aetherflow.connectors.smtp",
    "aetherflow.connectors.archive",
)
