"""Every aetherflow module imports only what the layer table allows (an allow-list, function-level
and ``TYPE_CHECKING`` imports included, ``from aetherflow import X`` seen as ``aetherflow.X``),
third-party libraries only where they belong, and only cli/ touches the process.

The table is docs/architecture.md's, lowest layer first, word for word: ALLOWED below, and a
test that reads the docs' table and finds it equal. A module may also import its own package's
modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "aetherflow"

_BOTTOM = {"errors", "durations", "compat", "__version__"}
_CORE = _BOTTOM | {"model", "template", "expressions", "workspace", "process"}
_RECORDS = _CORE | {"events", "locks", "state"}
_STEP_API = _RECORDS | {"context", "registry", "api"}

#: layer (top-level module or package) -> the aetherflow layers it may import besides its own
#: package; docs/architecture.md's table says exactly the same (test_the_docs_table_is_this_one)
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "durations": set(),
    "compat": set(),  # aetherflow-core's settings and environment: stdlib only
    "_reaper": set(),  # the watchdog process: stdlib only
    "model": {"errors"},
    "template": {"errors", "model"},
    "expressions": {"errors", "model", "template"},
    "workspace": {"errors", "model"},
    "process": {"errors", "model"},
    "spec": _CORE,
    "resolve": {"errors", "model", "template", "process"},
    "events": {"errors", "model"},
    "locks": {"errors", "model", "events"},
    "state": {"errors", "model", "events", "locks"},
    "context": _RECORDS,
    "registry": {"errors", "model"},
    "api": _RECORDS | {"context", "registry"},
    "connectors": _STEP_API,
    "steps": {"api", "process", "workspace", "durations", "connectors"},
    "plugins": {"errors", "__version__", "registry", "events", "steps", "connectors"},
    "engine": _RECORDS | {"context", "registry", "spec"},
    "config": {"errors", "durations", "model", "spec"},
    "settings": {"errors", "compat", "model", "template", "state", "config"},
    "notify": {"errors", "durations", "__version__", "model", "template", "process", "connectors"},
    "metrics": {"errors", "model", "state", "workspace"},
    "telemetry": {"events", "__version__"},
    "prepare": _STEP_API | {"spec", "resolve", "plugins", "engine", "settings"},
    "doctor": _STEP_API | {"spec", "resolve", "plugins", "settings", "prepare"},
    "runner": _STEP_API | {"spec", "resolve", "plugins", "engine", "settings", "prepare", "connectors", "config", "notify"},
    "render": {"errors", "model", "events", "state", "workspace"},
    # aetherflow-core's API: nothing in aetherflow imports it, so it may use what its functions
    # need (get_step/list_steps load a registry, FlowSpec.model_validate a flow, new_run_id)
    "core": _STEP_API | {"connectors", "spec", "plugins", "runner"},
    "cli": {"*"},
    "__main__": {"cli"},
}

#: finer rules inside a layer: module -> aetherflow modules it may not import
DENIED: dict[str, tuple[str, ...]] = {
    # the engine uses spec only to check step inputs against their schemas
    "engine/": ("aetherflow.spec.loader", "aetherflow.spec.semantic", "aetherflow.spec.cache", "aetherflow.steps",
                "aetherflow.plugins"),
    # a connector uses the shared bases, not another driver's module (dburl dispatches: below)
    "connectors/": ("aetherflow.connectors.http", "aetherflow.connectors.smtp", "aetherflow.connectors.archive",
                    "aetherflow.connectors.postgres", "aetherflow.connectors.sqlite", "aetherflow.connectors.dburl"),
    # nothing outside state/ knows a backend
    "": ("aetherflow.state.sqlite", "aetherflow.state.postgres"),
}
#: the exceptions to DENIED, each with its reason
EXCEPTIONS = {
    ("connectors/dburl.py", "aetherflow.connectors.postgres"): "db:sqlalchemy urls dispatch to the postgres driver",
    ("connectors/dburl.py", "aetherflow.connectors.sqlite"): "db:sqlalchemy urls dispatch to the sqlite driver",
    ("state/backends.py", "aetherflow.state.sqlite"): "the one place that knows the backends",
    ("state/backends.py", "aetherflow.state.postgres"): "the one place that knows the backends",
}

# third-party modules and the only aetherflow modules allowed to import them
THIRD_PARTY = {
    "yaml": ("spec/loader.py",),
    "jsonschema": ("spec/schema.py",),
    "rich": ("render.py",),
    "typer": ("cli/",),
    "click": ("cli/",),
    "sqlite3": ("state/sqlite.py", "connectors/sqlite.py"),
    "filelock": ("locks.py",),
    "dotenv": ("resolve.py",),
    "subprocess": ("process.py",),
    "psycopg": ("connectors/postgres.py", "state/postgres.py"),
    "opentelemetry": ("telemetry.py",),
    "tomllib": ("config.py",),
}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement names (``from aetherflow import x`` -> ``aetherflow.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "aetherflow":
                out.extend((f"aetherflow.{a.name}", node.lineno) for a in node.names)
            else:
                out.append((node.module, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append(("<relative>", node.lineno))
    return out


def layer_of(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def test_every_module_has_a_layer() -> None:
    missing = sorted({layer_of(str(p.relative_to(PKG))) for p in modules()} - set(ALLOWED))
    assert not missing, f"add these to ALLOWED (and docs/architecture.md): {missing}"


_NAME = re.compile(r"`?([A-Za-z_][A-Za-z0-9_]*)`?$")


def docs_table(text: str) -> dict[str, set[str]]:
    """docs/architecture.md's layer table: each layer of a row's first cell -> the modules its
    second cell names (``—``: none; ``everything``; ``as `X`, and ...``: X's, and those;
    parenthesized notes are not names)."""
    table: dict[str, set[str]] = {}
    section = text[text.index("## The layer table"):]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        layers = [n.strip().strip("`") for n in cells[0].split(",")]
        cell = re.sub(r"\([^()]*\)", "", cells[1]).strip()
        names: set[str] = set()
        if cell == "everything":
            names = {"*"}
        elif cell != "—":
            base = re.match(r"as `([a-z_]+)`, and (.*)$", cell)
            if base:
                names |= table[base.group(1)]
                cell = base.group(2)
            for part in cell.split(","):
                m = _NAME.match(part.strip())
                assert m, f"docs/architecture.md: not a module name in the {layers} row: {part!r}"
                names.add(m.group(1))
        for layer in layers:
            assert layer not in table, f"docs/architecture.md: {layer} has two rows"
            table[layer] = set(names)
    return table


def test_the_docs_table_is_this_one() -> None:
    doc = docs_table((PKG.parent / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert list(doc) == list(ALLOWED), "the layers or their order differ"
    differ = {layer: {"docs only": sorted(doc[layer] - allowed), "test only": sorted(allowed - doc[layer])}
              for layer, allowed in ALLOWED.items() if doc[layer] != allowed}
    assert not differ, differ


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_layers(path: Path) -> None:
    rel = str(path.relative_to(PKG))
    layer = layer_of(rel)
    allowed = ALLOWED[layer]
    bad = []
    for name, line in imports_of(path):
        if name == "<relative>":
            bad.append(f"{rel}:{line}: relative import (write aetherflow.X)")
            continue
        parts = name.split(".")
        if parts[0] == "aetherflow":
            target = parts[1] if len(parts) > 1 else "__init__"
            if "*" not in allowed and target not in allowed and target != layer:
                bad.append(f"{rel}:{line} imports {name}: layer '{layer}' may import only {sorted(allowed)}")
            for prefix, denied in DENIED.items():
                if rel.startswith(prefix):
                    for d in denied:
                        if (name == d or name.startswith(d + ".")) and (rel, d) not in EXCEPTIONS:
                            bad.append(f"{rel}:{line} imports {name} (denied for {prefix or 'every module'})")
            continue
        owners = THIRD_PARTY.get(parts[0])
        if owners is not None and not any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in owners):
            bad.append(f"{rel}:{line} imports {parts[0]}, allowed only in {', '.join(owners)}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_only_cli_touches_the_process(path: Path) -> None:
    rel = str(path.relative_to(PKG))
    if rel.startswith("cli/"):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = f"{node.value.id}.{node.attr}"
            if pair in ("os.environ", "os.getenv", "sys.exit", "os.chdir", "sys.argv", "os.putenv"):
                bad.append(f"{rel}:{node.lineno} uses {pair}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "eval", "exec"):
            bad.append(f"{rel}:{node.lineno} calls {node.func.id}()")
    assert not bad, "\n".join(bad)


def test_init_has_no_imports() -> None:
    tree = ast.parse((PKG / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    """The import walk finds function-level, TYPE_CHECKING and `from aetherflow import X` imports."""
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aetherflow.engine import run\n"
                 "def f():\n    from aetherflow import render\n    import aetherflow.cli.app\n", encoding="utf-8")
    names = [n for n, _ in imports_of(f)]
    assert {"aetherflow.engine", "aetherflow.render", "aetherflow.cli.app"} <= set(names)
