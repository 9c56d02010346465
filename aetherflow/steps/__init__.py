"""Built-in step types, one module per family. They load through the plugin path like any
third-party plugin (``plugins.load``), so ``aetherflow steps list`` shows their source."""

BUILTIN_MODULES: tuple[str, ...] = (
    "aetherflow.steps.control",
    "aetherflow.steps.process",
    "aetherflow.steps.data",
    "aetherflow.steps.net",
    "aetherflow.steps.files",
)
