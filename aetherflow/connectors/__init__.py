"""Built-in connectors, one module per ``kind:driver`` family."""

BUILTIN_CONNECTOR_MODULES: tuple[str, ...] = ()
