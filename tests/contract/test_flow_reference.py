"""docs/flow-reference.md documents every field of the flow and profiles schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aetherflow.spec.schema import load_schema

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "flow-reference.md"


def property_names(node: Any) -> Iterator[str]:
    """Every key of every ``properties`` object, at any depth of the schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                yield from value
            yield from property_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from property_names(item)


@pytest.mark.parametrize("name", ["flow", "profiles"])
def test_every_schema_property_is_documented(name: str) -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    names = sorted(set(property_names(load_schema(name))))
    assert len(names) > (30 if name == "flow" else 3)  # the walk really found the fields
    missing = [n for n in names if f"`{n}`" not in text]
    assert missing == [], f"add these fields to {REFERENCE.name}: {missing}"


def test_every_enum_value_is_documented() -> None:
    text = REFERENCE.read_text(encoding="utf-8")

    def enums(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for value in node.get("enum", ()):
                yield value if isinstance(value, str) else json.dumps(value)  # null, true, 1 as JSON writes them
            for value in node.values():
                yield from enums(value)
        elif isinstance(node, list):
            for item in node:
                yield from enums(item)

    missing = sorted({v for v in enums(load_schema("flow")) if f"`{v}`" not in text})
    assert missing == []
