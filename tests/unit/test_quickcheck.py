"""The jsonschema-free validity check (spec/quickcheck.py) must answer exactly as jsonschema
does: compared keyword by keyword on small schemas, and on every shipped schema over the
example flows, the bad-flow corpus and thousands of mutations of them."""

from __future__ import annotations

import copy
import importlib
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from aetherflow.errors import SpecError
from aetherflow.spec.loader import load_yaml
from aetherflow.spec.quickcheck import compile_check
from aetherflow.spec.schema import SchemaValidator, _inline_refs, load_schema

REPO = Path(__file__).resolve().parents[2]

INSTANCES: list[Any] = [
    None, True, False, 0, 1, 1.0, 1.5, -2, 3, 2**70, "", "a", "ab", "ba", "1", "é", "{{ params.x }}",
    [], [1], [1, 1], [1, True], [True, True], [0, False], [1, 1.0], [[1], [1]], [[1], [True]],
    [{"a": 1}, {"a": 1}], [{"a": 1}, {"a": 1.0}], ["a", "b"], [1, 2, 3],
    {}, {"a": "x"}, {"a": 1}, {"a": True}, {"a": "x", "b": "y"}, {"x_1": 1}, {"x_1": "s"}, {"B": 1},
    {"a": 1, "b": 2, "c": 3}, {"a": None}, {"a": [1]}, {"a": {"a": 1}},
]

SCHEMAS: list[Any] = [
    True, False, {}, {"description": "only an annotation", "default": 3, "format": "email"},
    {"type": "integer"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"},
    {"type": "array"}, {"type": "object"}, {"type": ["string", "null"]}, {"type": ["integer", "boolean"]},
    {"enum": [1, "a", None, [1], {"a": 1}]}, {"enum": [True]}, {"enum": [0]}, {"enum": [1.0]},
    {"const": 1}, {"const": True}, {"const": [1]}, {"const": {"a": 1}}, {"const": None},
    {"uniqueItems": True}, {"uniqueItems": False},
    {"minLength": 2}, {"maxLength": 1}, {"pattern": "^a"}, {"pattern": "b"}, {"pattern": "^[a-z]+$", "minLength": 1},
    {"minimum": 1}, {"maximum": 1}, {"exclusiveMinimum": 1}, {"exclusiveMaximum": 3}, {"minimum": 0.5, "maximum": 3},
    {"properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"properties": {"a": {"type": "string"}}},
    {"patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {"patternProperties": {"^x_": {"type": "integer"}, "1$": {"minimum": 5}}},
    {"additionalProperties": {"type": "integer"}},
    {"required": ["a"]}, {"required": ["a", "b"], "type": "object"}, {"dependentRequired": {"a": ["b"]}},
    {"propertyNames": {"pattern": "^[a-z]+$"}}, {"propertyNames": {"maxLength": 1}},
    {"minProperties": 1}, {"maxProperties": 2}, {"minProperties": 1, "maxProperties": 2},
    {"items": {"type": "integer"}}, {"items": False}, {"minItems": 1}, {"maxItems": 2},
    {"items": {"type": "integer"}, "minItems": 1, "maxItems": 2, "uniqueItems": True},
    {"oneOf": [{"type": "integer"}, {"minimum": 0}]}, {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    {"anyOf": [{"type": "string"}, {"type": "null"}]}, {"allOf": [{"minimum": 0}, {"type": "integer"}]},
    {"not": {"type": "null"}}, {"not": {"required": ["a"]}},
    {"type": "object", "properties": {"a": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^x"}]}},
     "required": ["a"], "additionalProperties": False},
]

UNSUPPORTED: list[Any] = [
    {"$ref": "#/$defs/x", "$defs": {"x": {}}}, {"if": {"type": "string"}, "then": {"minLength": 1}},
    {"contains": {"type": "integer"}}, {"unevaluatedProperties": False}, {"type": "no-such-type"},
    {"items": [{"type": "integer"}]}, {"prefixItems": [{}]}, {"properties": {"a": {"dependentSchemas": {}}}},
    {"pattern": "("}, {"minimum": "1"}, [1], "string",
]


def jsonschema_says(schema: Any, instance: Any) -> bool:
    return not list(Draft202012Validator(schema, format_checker=None).iter_errors(instance))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: re.sub(r"\s+", "", repr(s))[:60])
def test_each_keyword_answers_as_jsonschema(schema: Any) -> None:
    check = compile_check(schema)
    assert check is not None, schema
    for instance in INSTANCES:
        assert check(instance) is jsonschema_says(schema, instance), (schema, instance)


@pytest.mark.parametrize("schema", UNSUPPORTED, ids=repr)
def test_anything_else_is_left_to_jsonschema(schema: Any) -> None:
    assert compile_check(schema) is None


# ------------------------------------------------------------------------ shipped schemas


def _documents() -> Iterator[tuple[str, Any]]:
    files = sorted((REPO / "flows").glob("*.yaml")) + sorted((REPO / "tests" / "corpus").rglob("*.yaml"))
    for path in files:
        try:
            doc, _ = load_yaml(path.read_bytes(), str(path))
        except SpecError:
            continue  # not YAML the loader accepts: never reaches a schema
        yield path.name, doc
    for md in sorted((REPO / "docs").glob("*.md")):  # the flows shown in the docs
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", md.read_text(), flags=re.S)):
            try:
                doc, _ = load_yaml(block, f"{md.name}#{i}")
            except SpecError:
                continue
            yield f"{md.name}#{i}", doc


PALETTE: list[Any] = [None, True, 0, 1, 2.5, -1, "", "x", "{{ params.x }}", "Bad Id!", [], ["x"], [1, 1], {}, {"zz_unknown": 1}]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _mutants(doc: Any, rng: random.Random, n: int) -> Iterator[Any]:
    paths = list(_paths(doc))
    for _ in range(n):
        path = rng.choice(paths)
        new = copy.deepcopy(doc)
        if not path:
            yield rng.choice(PALETTE)
            continue
        parent = new
        for key in path[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.3 and isinstance(parent, dict):
            parent["zz_" + rng.choice("abc")] = rng.choice(PALETTE)
        elif action < 0.4 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))  # a repeated item
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(PALETTE))
        yield new


def _agree(schema: dict[str, Any], instances: list[tuple[str, Any]]) -> tuple[int, int]:
    inlined = _inline_refs(copy.deepcopy(schema))
    check = compile_check(inlined)
    assert check is not None
    full = Draft202012Validator(inlined, format_checker=None)
    valid = invalid = 0
    for name, instance in instances:
        expected = not list(full.iter_errors(instance))
        assert check(instance) is expected, (name, instance)
        valid += expected
        invalid += not expected
    return valid, invalid


def test_flow_schema_over_examples_corpus_and_mutants() -> None:
    rng = random.Random(20261204)
    docs = list(_documents())
    instances = list(docs)
    for name, doc in docs:
        instances += [(f"{name} mutant", m) for m in _mutants(doc, rng, 60)]
    valid, invalid = _agree(load_schema("flow"), instances)
    assert valid >= 20 and invalid >= 1000, (valid, invalid)  # both answers were really exercised


def _builtin_step_schemas() -> dict[str, dict[str, Any]]:
    from aetherflow.engine.preflight import _plain
    from aetherflow.registry import Registry
    from aetherflow.steps import BUILTIN_MODULES

    reg = Registry()
    for module in BUILTIN_MODULES:
        reg.collect_module(importlib.import_module(module), f"builtin:{module}")
    return {name: _plain(st.meta.inputs_schema) for name, st in reg.steps.items() if st.meta.inputs_schema}


def _step_inputs(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and "inputs" in node:
            yield node["type"], node["inputs"]
        for v in node.values():
            yield from _step_inputs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _step_inputs(v)


def test_builtin_step_schemas_over_corpus_inputs_and_mutants() -> None:
    schemas = _builtin_step_schemas()
    found: dict[str, list[Any]] = {name: [] for name in schemas}
    for _, doc in _documents():
        for type_name, inputs in _step_inputs(doc):
            if type_name in found:
                found[type_name].append(inputs)
    rng = random.Random(7)
    exercised = 0
    for name, schema in sorted(schemas.items()):
        seeds = found[name] or [{}]
        instances = [(name, s) for s in seeds]
        for s in seeds:
            instances += [(f"{name} mutant", m) for m in _mutants(s, rng, 40)]
        _agree(schema, instances)
        exercised += len(instances)
    assert exercised > 500


def test_profiles_schema_agrees() -> None:
    rng = random.Random(3)
    seed = {"profiles": {"dev": {"env": {"A": "1"}, "params": {"x": 1}}}}
    instances = [("seed", seed)] + [("mutant", m) for m in _mutants(seed, rng, 200)]
    _agree(load_schema("profiles"), instances)


def test_a_valid_flow_is_checked_without_importing_jsonschema() -> None:
    """The point of the quick check: a subprocess validating a good flow never loads jsonschema."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from aetherflow.spec.schema import SchemaValidator, load_schema\n"
        "v = SchemaValidator(load_schema('flow'), check=False)\n"
        "doc = {'version': 1, 'flow': {'id': 'f'}, 'jobs': [{'id': 'j', 'steps': [{'id': 's', 'type': 'noop'}]}]}\n"
        "assert v.validate(doc, file='f.yaml', positions=None) == []\n"
        "print('jsonschema' in sys.modules)\n"
        "bad = {'version': 1, 'flow': {'id': 'f'}, 'jobs': []}\n"
        "issues = v.validate(bad, file='f.yaml', positions=None)\n"
        "print([i.code for i in issues], 'jsonschema' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "['schema.min_items'] True"


def test_schema_validator_reports_what_jsonschema_finds() -> None:
    v = SchemaValidator({"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False},
                        check=False)
    assert v.validate({"n": 1}, file="f", positions=None) == []
    codes = sorted(i.code for i in v.validate({"n": "x", "m": 1}, file="f", positions=None))
    assert codes == ["schema.additional_property", "schema.type"]


def test_builtin_step_schemas_are_valid_json_schema() -> None:
    """Preflight does not check built-in step types' inputs_schema on every run (only a
    plugin's, which may be wrong): this test does, once."""
    schemas = _builtin_step_schemas()
    assert {"noop", "external.process", "with_lock"} <= schemas.keys()
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
