"""The ``when:`` language: precedence, operators, strict equality, null handling, errors."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from aetherflow.errors import AetherflowError
from aetherflow.expressions import (
    And,
    Compare,
    Const,
    ExpressionError,
    ListOf,
    Not,
    Or,
    Path,
    evaluate,
    parse,
    parse_when,
    paths,
)
from aetherflow.model import Masked, freeze

SCOPE: dict[str, Any] = {
    "t": True,
    "f": False,
    "zero": 0,
    "n": 3,
    "x": 2.5,
    "s": "abc",
    "empty": "",
    "none": None,
    "lst": [1, 2, "three"],
    "tup": (1, 2),
    "m": {"k": 1, "other": "v"},
    "params": {"full": True, "env": "prod", "limit": 10, "my-key": "dash"},
    "jobs": {"probe": {"outputs": {"items": [5, 6], "count": 2}}},
    "secret": Masked("steps.login.outputs.token"),
}


def ev(text: str, scope: Any = None) -> bool:
    return evaluate(parse(text), SCOPE if scope is None else scope)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("not a and b", And((Not(Path(("a",))), Path(("b",))))),
        ("a or b and c", Or((Path(("a",)), And((Path(("b",)), Path(("c",))))))),
        ("(a or b) and c", And((Or((Path(("a",)), Path(("b",)))), Path(("c",))))),
        ("not a == b", Not(Compare("==", Path(("a",)), Path(("b",))))),
        ("not a in b", Not(Compare("in", Path(("a",)), Path(("b",))))),
        ("a not in b", Compare("not in", Path(("a",)), Path(("b",)))),
        ("a or b or c", Or((Path(("a",)), Path(("b",)), Path(("c",))))),
        ("not not a", Not(Not(Path(("a",))))),
        ("-1.5", Const(-1.5)),
        ("- 2", Const(-2)),
        ("[1, 'a', null,]", ListOf((Const(1), Const("a"), Const(None)))),
        ("[]", ListOf(())),
        ("((a))", Path(("a",))),
        ("jobs.probe.outputs.items.0", Path(("jobs", "probe", "outputs", "items", "0"))),
        ("my-root.some-key", Path(("my-root", "some-key"))),
        ("1e3", Const(1000.0)),
        ("007", Const(7)),
    ],
)
def test_parse_tree(text: str, tree: Any) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # precedence
        ("not f and f", False),
        ("not (f and f)", True),
        ("t or f and f", True),
        ("(t or f) and f", False),
        ("f or t and t", True),
        ("not t or t", True),
        ("not (t or t)", False),
        # every comparison operator
        ("n == 3", True),
        ("n != 3", False),
        ("n < 4", True),
        ("n <= 3", True),
        ("n > 3", False),
        ("n >= 3", True),
        ("x > n", False),
        ("x < n", True),
        ("s == 'abc'", True),
        ('s == "abc"', True),
        ("s < 'abd'", True),
        ("s >= 'abc'", True),
        ("params.env == 'prod' and params.limit > 5", True),
        ("params.my-key == 'dash'", True),
        ("jobs.probe.outputs.items.1 == 6", True),
        ("jobs.probe.outputs.items.2 == null", True),
        ("jobs.probe.outputs.count >= 2", True),
        # strict equality
        ("'3' == 3", False),
        ("'3' != 3", True),
        ("1 == 1.0", True),
        ("True == 1", False),
        ("true == 1", False),
        ("false == 0", False),
        ("zero == false", False),
        ("t == true", True),
        ("none == null", True),
        ("none == None", True),
        ("none == false", False),
        ("none == 0", False),
        ("empty == null", False),
        ("lst == [1, 2, 'three']", True),
        ("tup == [1, 2]", True),
        ("tup == [1, true]", False),
        ("m == m", True),
        # ordering never raises
        ("none < 1", False),
        ("none > 1", False),
        ("none <= none", False),
        ("1 < none", False),
        ("s < 1", False),
        ("s > 1", False),
        ("t > f", False),
        ("n < true", False),
        ("lst < 1", False),
        # membership
        ("2 in lst", True),
        ("'three' in lst", True),
        ("true in lst", False),
        ("2 not in lst", False),
        ("9 not in lst", True),
        ("'b' in s", True),
        ("'z' in s", False),
        ("'z' not in s", True),
        ("1 in s", False),
        ("1 not in s", True),
        ("'k' in m", True),
        ("'v' in m", False),
        ("'v' not in m", True),
        ("params.env in ['prod', 'staging']", True),
        ("params.env not in ['prod', 'staging']", False),
        ("1 in tup", True),
        ("1 in none", False),
        ("1 not in none", False),
        ("1 in n", False),
        ("1 not in n", False),
        ("missing in lst", False),
        ("missing not in lst", True),
        # missing paths are null, never an error
        ("missing", False),
        ("not missing", True),
        ("missing == null", True),
        ("missing.deep.path == null", True),
        ("missing != 1", True),
        ("missing > 0", False),
        ("lst.9 == null", True),
        ("s.0 == null", True),
        # masked values read as null
        ("secret == null", True),
        ("secret", False),
        # truthiness
        ("t", True),
        ("zero", False),
        ("n", True),
        ("empty", False),
        ("lst", True),
        ("[]", False),
        ("[0]", True),
        ("''", False),
        ("0.0", False),
        ("null", False),
        # spellings
        ("True and true", True),
        ("False or false", False),
        ("None == null", True),
        # negative numbers and literals
        ("-1 < 0", True),
        ("-2.5 == -2.5", True),
        ("'it\\'s' == \"it's\"", True),
        ("'a\\nb' != 'a\\\\nb'", True),
        ("'tab\\there' == \"tab\\there\"", True),
        ("[1, [2, 3]] == [1, [2, 3]]", True),
        ("[n, s] == [3, 'abc']", True),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    result = ev(text)
    assert result is expected


def test_and_or_short_circuit_and_return_bool() -> None:
    assert ev("lst and s") is True
    assert ev("empty or zero") is False
    assert ev("n or missing.x") is True


def test_frozen_scope() -> None:
    scope = freeze({"steps": {"p": {"rows": [{"id": 1}], "tags": ["a", "b"]}}})
    assert isinstance(scope, MappingProxyType)
    assert ev("steps.p.rows.0.id == 1", scope)
    assert ev("'a' in steps.p.tags", scope)
    assert ev("steps.p.tags == ['a', 'b']", scope)
    assert ev("'rows' in steps.p", scope)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", [("a",)]),
        ("a.b == c.d.0", [("a", "b"), ("c", "d", "0")]),
        ("not (x or y) and z in [w, 1]", [("x",), ("y",), ("z",), ("w",)]),
        ("1 == 1", []),
    ],
)
def test_paths(text: str, expected: list[tuple[str, ...]]) -> None:
    assert list(paths(parse(text))) == expected


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False)])
def test_parse_when_bool(value: bool, expected: bool) -> None:
    expr = parse_when(value)
    assert expr == Const(value)
    assert evaluate(expr, {}) is expected


def test_parse_when_string_and_bad_type() -> None:
    assert parse_when("n > 1") == Compare(">", Path(("n",)), Const(1))
    with pytest.raises(ExpressionError):
        parse_when(3)  # type: ignore[arg-type]


def test_tree_is_immutable() -> None:
    expr = parse("a == 1")
    assert isinstance(expr, Compare)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.op = "!="  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        ("a &&b", 2, "'&&'"),
        ("a || b", 2, "'||'"),
        ("a = 1", 2, "'='"),
        ("!a", 0, "'!'"),
        ("f(x)", 0, "function calls"),
        ("a.b(1)", 0, "function calls"),
        ("a < b < c", 6, "chained"),
        ("a == b != c", 7, "chained"),
        ("(a or b", 7, "expected ')'"),
        ("(a or b and c d", 14, "expected ')'"),
        ("a b", 2, "unexpected token 'b'"),
        ("a and", 5, "unexpected end"),
        ("a ==", 4, "unexpected end"),
        ("and a", 0, "unexpected token 'and'"),
        ("a not b", 2, "unexpected token 'not'"),
        ("[1, 2", 5, "expected ',' or ']'"),
        ("[1 2]", 3, "expected ',' or ']'"),
        ("-a", 0, "unary '-'"),
        ("--1", 0, "unary '-'"),
        ("'abc", 0, "unterminated string"),
        ('x == "abc', 5, "unterminated string"),
        ("'a\\qb'", 2, "unknown escape"),
        ("1abc", 0, "invalid number"),
        ("a..b", 1, "unexpected character '.'"),
        ("a. == 1", 1, "unexpected character '.'"),
        ("{{ a }}", 0, "templates are not allowed"),
        ("a == @", 5, "unexpected character '@'"),
        (")", 0, "unexpected token ')'"),
        ("a == 1)", 6, "unexpected token ')'"),
        ("in", 0, "unexpected token 'in'"),
        ("(" * 100 + "a" + ")" * 100, 64, "nested too deeply"),
    ],
)
def test_syntax_errors(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    err = info.value
    assert err.offset == offset
    assert fragment in str(err)
    assert f"column {offset + 1}" in str(err)
    assert err.code == "when.syntax"
    assert isinstance(err, AetherflowError)
