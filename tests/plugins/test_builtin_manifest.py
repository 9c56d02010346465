"""Built-in step and connector modules are imported when first used: the name tables in
``aetherflow.steps`` / ``aetherflow.connectors`` must say exactly what the modules register."""

from __future__ import annotations

import subprocess
import sys

from aetherflow import plugins
from aetherflow.connectors import BUILTIN_CONNECTOR_MODULES, BUILTIN_CONNECTORS
from aetherflow.steps import BUILTIN_MODULES, BUILTIN_STEP_TYPES


def test_tables_match_what_the_modules_register() -> None:
    eager = plugins.load(builtin_modules=(*BUILTIN_MODULES, *BUILTIN_CONNECTOR_MODULES), use_entry_points=False).registry
    steps = {name: st.source.removeprefix("builtin (").removesuffix(")") for name, st in eager.steps.items()}
    assert steps == BUILTIN_STEP_TYPES
    keys = {key: ct.source.removeprefix("builtin (").removesuffix(")") for key, ct in eager.connectors.items()}
    keys.update({alias: keys[target] for alias, target in eager.aliases.items()})
    assert keys == BUILTIN_CONNECTORS


def test_lazy_registry_knows_every_builtin_and_imports_only_what_is_used() -> None:
    code = """
import sys
from aetherflow import plugins
reg = plugins.load(use_entry_points=False).registry
print(reg.step("noop").source)
print("aetherflow.steps.process" in sys.modules, "aetherflow.connectors.http" in sys.modules)
print(reg.connector("db", "sqlite").key)  # an alias
print(reg.step("no.such") is None)
print(sorted(reg.steps) == sorted(NAMES))
print("aetherflow.steps.process" in sys.modules)
""".replace("NAMES", repr(sorted(BUILTIN_STEP_TYPES)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:6] == ["builtin (aetherflow.steps.control)", "False False", "db:sqlite3", "True", "True", "True"]
