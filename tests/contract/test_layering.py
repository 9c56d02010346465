"""Every aetherflow module imports only what STYLE.md's layer table allows (function-level
imports included), and only cli/ touches os.environ / sys.exit / print."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "aetherflow"

# the bottom layer, below errors: stdlib only, and every module may import it
BOTTOM = ("aetherflow.records",)

# module (or package prefix) -> aetherflow modules it must NOT import (BOTTOM aside)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "records": ("aetherflow.",),
    "errors": ("aetherflow.",),
    "compat": ("aetherflow.",),
    "model": ("aetherflow.template", "aetherflow.spec", "aetherflow.engine", "aetherflow.state", "aetherflow.cli",
              "aetherflow.pipeline", "aetherflow.render", "aetherflow.resolve"),
    "template": ("aetherflow.spec", "aetherflow.engine", "aetherflow.state", "aetherflow.cli", "aetherflow.pipeline",
                 "aetherflow.expressions", "aetherflow.render"),
    "expressions": ("aetherflow.spec", "aetherflow.engine", "aetherflow.state", "aetherflow.cli", "aetherflow.pipeline",
                    "aetherflow.render"),
    "workspace": ("aetherflow.spec", "aetherflow.engine", "aetherflow.state", "aetherflow.cli", "aetherflow.pipeline"),
    "process": ("aetherflow.spec", "aetherflow.engine", "aetherflow.state", "aetherflow.cli", "aetherflow.pipeline",
                "aetherflow.steps"),
    "spec": ("aetherflow.engine", "aetherflow.state", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.steps",
             "aetherflow.render", "aetherflow.plugins"),
    "state": ("aetherflow.engine", "aetherflow.spec", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.steps",
              "aetherflow.render"),
    "locks": ("aetherflow.engine", "aetherflow.spec", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.steps"),
    "events": ("aetherflow.engine", "aetherflow.spec", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.state"),
    "registry": ("aetherflow.engine", "aetherflow.spec", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.steps"),
    "steps": ("aetherflow.engine", "aetherflow.spec", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.state",
              "aetherflow.plugins", "aetherflow.render", "aetherflow.resolve"),
    "engine": ("aetherflow.steps", "aetherflow.plugins", "aetherflow.cli", "aetherflow.pipeline", "aetherflow.render"),
    "pipeline": ("aetherflow.cli", "aetherflow.render"),
    "render": ("aetherflow.engine", "aetherflow.pipeline", "aetherflow.cli", "aetherflow.steps"),
}
# third-party modules and the only aetherflow modules allowed to import them
THIRD_PARTY = {
    "yaml": ("spec/loader.py",),
    "jsonschema": ("spec/schema.py",),
    "rich": ("render.py",),
    "typer": ("cli/",),
    "sqlite3": ("state/sqlite.py", "connectors/sqlite.py", "cli/complete.py"),
    "filelock": ("locks.py",),
    "dotenv": ("resolve.py",),
    "subprocess": ("process.py",),
    "psycopg": ("connectors/postgres.py",),
}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
    return out


def layer_of(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_layers(path: Path) -> None:
    rel = str(path.relative_to(PKG))
    layer = layer_of(rel)
    bad = []
    for name, line in imports_of(path):
        for prefix in FORBIDDEN.get(layer, ()) if name not in BOTTOM or layer == "records" else ():
            if name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".") or name == prefix:
                bad.append(f"{rel}:{line} imports {name} (layer '{layer}' may not import {prefix})")
        top = name.split(".")[0]
        allowed = THIRD_PARTY.get(top)
        if allowed is not None and not any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
            bad.append(f"{rel}:{line} imports {top}, allowed only in {', '.join(allowed)}")
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
            if rel == "records.py" and node.func.id == "exec":
                continue  # compiles the methods it generates from field names, as dataclasses does
            bad.append(f"{rel}:{node.lineno} calls {node.func.id}()")
    assert not bad, "\n".join(bad)


def test_init_has_no_imports() -> None:
    tree = ast.parse((PKG / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
