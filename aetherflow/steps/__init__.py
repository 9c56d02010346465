"""Built-in step types, one module per family. They load through the plugin path like any
third-party plugin (``plugins.load``), so ``aetherflow steps list`` shows their source. A module
is imported the first time one of its step types is looked up (``BUILTIN_STEP_TYPES``), so a run
pays only for the families its flow uses; a test keeps the table equal to what the modules
register."""


#: step type name -> the built-in module that registers it
BUILTIN_STEP_TYPES: dict[str, str] = {
    "check_items": "aetherflow.steps.control",
    "debug": "aetherflow.steps.control",
    "noop": "aetherflow.steps.control",
    "wait": "aetherflow.steps.control",
    "wait_for_event": "aetherflow.steps.control",
    "with_lock": "aetherflow.steps.control",
    "external.process": "aetherflow.steps.process",
    "db_query": "aetherflow.steps.data",
    "db_extract": "aetherflow.steps.data",
    "db_load": "aetherflow.steps.dbload",
    "http_request": "aetherflow.steps.net",
    "mail_send": "aetherflow.steps.net",
    "zip": "aetherflow.steps.files",
    "unzip": "aetherflow.steps.files",
}

#: the modules of that table, in import order
BUILTIN_MODULES: tuple[str, ...] = tuple(dict.fromkeys(BUILTIN_STEP_TYPES.values()))
