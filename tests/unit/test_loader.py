"""Unit tests for aetherflow.spec.loader: strict YAML -> JSON values + positions."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aetherflow.errors import Location, SpecError, format_path
from aetherflow.spec.loader import Positions, load_yaml


def load(text: str | bytes, **kwargs: Any) -> Any:
    value, _ = load_yaml(text, "flow.yaml", **kwargs)
    return value


def issues_of(text: str | bytes, **kwargs: Any) -> list[tuple[str, int | None, int | None, str]]:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "flow.yaml", **kwargs)
    err = info.value
    assert err.issues, "SpecError without issues"
    for issue in err.issues:
        assert issue.location is not None
        assert issue.location.file == "flow.yaml"
    return [
        (i.code, i.location.line, i.location.column, i.location.path)
        for i in err.issues
        if i.location is not None
    ]


# ------------------------------------------------------------------ plain values


def test_plain_document_loads_json_values() -> None:
    text = "name: demo\nsteps:\n  - id: a\n    n: 3\n  - id: b\n    ok: true\nextra: {x: [1, 2.5, null]}\n"
    assert load(text) == {
        "name": "demo",
        "steps": [{"id": "a", "n": 3}, {"id": "b", "ok": True}],
        "extra": {"x": [1, 2.5, None]},
    }


def test_root_may_be_a_list_or_scalar() -> None:
    assert load("- 1\n- two\n") == [1, "two"]
    assert load("hello\n") == "hello"


def test_block_and_quoted_scalars_are_strings() -> None:
    assert load("a: |\n  true\nb: >-\n  12\nc: '3'\n") == {"a": "true\n", "b": "12", "c": "3"}


def test_empty_collections() -> None:
    assert load("a: []\nb: {}\n") == {"a": [], "b": {}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # nulls
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        # booleans: only the six core spellings
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        # no YAML 1.1 surprises
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("NO", "NO"),
        ("12:30", "12:30"),
        ("2026-11-20", "2026-11-20"),
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z"),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("012", "012"),
        ("-012", "-012"),
        ("00", "00"),
        ("0x", "0x"),
        ("0xZZ", "0xZZ"),
        ("0o8", "0o8"),
        ("1.2.3", "1.2.3"),
        ("+", "+"),
        ("-x", "-x"),
        (".", "."),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1e", "1e"),
        ("TrUe", "TrUe"),
        # integers
        ("0", 0),
        ("-0", 0),
        ("7", 7),
        ("+7", 7),
        ("-42", -42),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("0x1F", 31),
        ("0xff", 255),
        ("0o17", 15),
        # floats
        ("1e3", 1000.0),
        ("1E-2", 0.01),
        ("2.5", 2.5),
        ("-2.5", -2.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("+.5e1", 5.0),
        (".inf", math.inf),
        ("+.inf", math.inf),
        ("-.inf", -math.inf),
        (".Inf", math.inf),
        ("-.INF", -math.inf),
        # quoted is always a string
        ('"true"', "true"),
        ("'null'", "null"),
        ('"12"', "12"),
        ("'0x1F'", "0x1F"),
        ('""', ""),
        ('"~"', "~"),
    ],
)
def test_scalar_resolution(text: str, expected: Any) -> None:
    value = load(f"v: {text}\n")["v"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".NAN"])
def test_nan(text: str) -> None:
    value = load(f"v: {text}\n")["v"]
    assert isinstance(value, float) and math.isnan(value)


def test_integer_too_long_for_int_stays_text() -> None:
    digits = "9" * 5000  # over Python's default int/str conversion limit
    assert load(f"v: {digits}\n") == {"v": digits}


def test_keys_are_always_the_scalar_text() -> None:
    assert load("1: a\ntrue: b\nnull: c\n~: d\n'x': e\n0x10: f\n") == {
        "1": "a",
        "true": "b",
        "null": "c",
        "~": "d",
        "x": "e",
        "0x10": "f",
    }


def test_quoted_merge_key_is_an_ordinary_key() -> None:
    assert load("'<<': 1\n") == {"<<": 1}


# ------------------------------------------------------------- bytes / encoding


def test_bytes_input() -> None:
    assert load("name: café\nn: 1\n".encode()) == {"name": "café", "n": 1}


def test_bytes_with_bom() -> None:
    value, pos = load_yaml(b"\xef\xbb\xbfa: 1\n", "flow.yaml")
    assert value == {"a": 1}
    assert pos.key(("a",)) == (1, 1)


def test_not_utf8() -> None:
    assert issues_of(b"a: 1\nb: \xff\xfe\n") == [("yaml.not_utf8", 2, 4, "")]


def test_utf16_is_not_utf8() -> None:
    assert issues_of("a: 1\n".encode("utf-16"))[0][0] == "yaml.not_utf8"


def test_columns_count_characters_not_bytes() -> None:
    _, pos = load_yaml("é: [ü, x]\n".encode(), "flow.yaml")
    assert pos.get(("é", 1)) == (1, 8)


# ------------------------------------------------------------------------ codes


def test_syntax_error_position_and_message() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", "flow.yaml")
    (issue,) = info.value.issues
    assert issue.code == "yaml.syntax"
    assert issue.location is not None
    assert (issue.location.line, issue.location.column) == (3, 2)
    assert "expected" in issue.message
    assert "\n" not in issue.message


def test_syntax_error_bad_indentation() -> None:
    (found,) = issues_of("a:\n  b: 1\n c: 2\n")
    assert found[:3] == ("yaml.syntax", 3, 2)


def test_syntax_error_control_character() -> None:
    (found,) = issues_of("a: 1\nb: x\x01y\n")
    assert found[:3] == ("yaml.syntax", 2, 5)


def test_syntax_error_stops_but_keeps_earlier_issues() -> None:
    found = issues_of("a: 1\na: 2\nb: [\n")
    assert [f[0] for f in found] == ["yaml.duplicate_key", "yaml.syntax"]


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# only a comment\n", "---\n", "~\n", "null\n", "---\n...\n"]
)
def test_empty(text: str) -> None:
    assert issues_of(text) == [("yaml.empty", 1, 1, "")]


def test_multiple_documents() -> None:
    assert issues_of("a: 1\n---\nb: 2\n") == [("yaml.multiple_documents", 2, 1, "")]
    assert issues_of("---\na: 1\n---\n") == [("yaml.multiple_documents", 3, 1, "")]


def test_duplicate_key() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("a: 1\nb: 2\na: 3\n", "flow.yaml")
    (issue,) = info.value.issues
    assert issue.code == "yaml.duplicate_key"
    assert issue.location == Location("flow.yaml", 3, 1, "a")
    assert "'a'" in issue.message and "line 1" in issue.message


def test_several_duplicate_keys_in_one_error() -> None:
    text = "a: 1\na: 2\njobs:\n  - x: 1\n    y: 2\n    x: 3\nb: {k: 1, k: 2}\na: 4\n"
    with pytest.raises(SpecError) as info:
        load_yaml(text, "flow.yaml")
    err = info.value
    assert err.code == "yaml.duplicate_key"
    assert [
        (i.code, str(i.location), i.location.path if i.location else None) for i in err.issues
    ] == [
        ("yaml.duplicate_key", "flow.yaml:2:1", "a"),
        ("yaml.duplicate_key", "flow.yaml:6:5", "jobs[0].x"),
        ("yaml.duplicate_key", "flow.yaml:7:11", "b.k"),
        ("yaml.duplicate_key", "flow.yaml:8:1", "a"),
    ]
    assert all("line 1" in i.message for i in err.issues if i.location and i.location.path == "a")
    assert err.message.startswith("4 problems")


def test_anchor_refused() -> None:
    assert issues_of("a: &x 1\nb: 2\n") == [("yaml.alias", 1, 4, "a")]


def test_anchor_on_collection_refused() -> None:
    assert issues_of("base:\n  - &s {a: 1}\n") == [("yaml.alias", 2, 5, "base[0]")]


def test_anchor_on_key_refused() -> None:
    assert issues_of("&k a: 1\n") == [("yaml.alias", 1, 1, "a")]


def test_alias_refused() -> None:
    # An alias to an undefined anchor is a composer error, not a parser one: the
    # event parser reports it as an alias like any other.
    assert issues_of("a: 1\nb: *x\n") == [("yaml.alias", 2, 4, "b")]


def test_billion_laughs_refused_at_first_anchor() -> None:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, 10):
        refs = ", ".join([f"*l{n - 1}"] * 9)
        lines.append(f"lol{n}: &l{n} [{refs}]")
    lines.append("boom: *l9")
    assert issues_of("\n".join(lines) + "\n") == [("yaml.alias", 1, 7, "lol0")]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: !!str 1\n", (1, 4, "a")),
        ("a: !foo x\n", (1, 4, "a")),
        ("a: ! x\n", (1, 4, "a")),
        ("a: !!python/object:os.system {}\n", (1, 4, "a")),
        ("a: !!python/name:os.system ''\n", (1, 4, "a")),
        ("!!map\na: 1\n", (1, 1, "")),
        ("a:\n  - !!seq [1]\n", (2, 5, "a[0]")),
        ("!!str k: v\n", (1, 1, "k")),
    ],
)
def test_tags_refused(text: str, where: tuple[int, int, str]) -> None:
    assert issues_of(text) == [("yaml.tag", *where)]


def test_several_tags_all_reported() -> None:
    assert [f[0] for f in issues_of("a: !!int 1\nb: !!str 2\nc: !x 3\n")] == ["yaml.tag"] * 3


def test_complex_keys_refused() -> None:
    assert issues_of("? [a, b]\n: 1\nc: 2\n") == [("yaml.non_string_key", 1, 3, "")]
    assert issues_of("x:\n  ? {a: 1}\n  : 1\n") == [("yaml.non_string_key", 2, 5, "x")]
    assert issues_of("{[a]: 1, {b: 2}: 3}\n") == [
        ("yaml.non_string_key", 1, 2, ""),
        ("yaml.non_string_key", 1, 10, ""),
    ]


def test_merge_key_refused() -> None:
    text = "base: {a: 1}\njob:\n  <<: {a: 2}\n  b: 3\n"
    assert issues_of(text) == [("yaml.merge_key", 3, 3, 'job["<<"]')]


def test_too_large_bytes_and_str() -> None:
    assert issues_of(b"a: 1234567890\n", max_bytes=10) == [("yaml.too_large", 1, 1, "")]
    assert issues_of("a: 1234567890\n", max_bytes=10) == [("yaml.too_large", 1, 1, "")]
    # counted in UTF-8 bytes, not characters: 4 characters, 8 bytes
    assert issues_of("a: éé", max_bytes=6) == [("yaml.too_large", 1, 1, "")]
    assert load("a: 1\n", max_bytes=5) == {"a": 1}


def test_too_large_checked_before_decoding() -> None:
    assert issues_of(b"\xff" * 20, max_bytes=10) == [("yaml.too_large", 1, 1, "")]


def test_too_deep() -> None:
    assert load("[[[1]]]", max_depth=3) == [[[1]]]
    assert issues_of("[[[[1]]]]", max_depth=3) == [("yaml.too_deep", 1, 4, "[0][0][0]")]
    nested = "a:\n  b:\n    c:\n      d: 1\n"
    assert issues_of(nested, max_depth=3) == [("yaml.too_deep", 4, 7, "a.b.c")]


def test_too_deep_default_limit() -> None:
    assert issues_of("[" * 100 + "]" * 100)[0][0] == "yaml.too_deep"
    assert load("[" * 64 + "]" * 64) is not None


def test_spec_error_carries_file_and_first_code() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("a: !!str x\na: 2\n", "flows/x.yaml")
    err = info.value
    assert err.code == "yaml.tag"
    assert err.location is not None and err.location.file == "flows/x.yaml"
    assert [i.code for i in err.issues] == ["yaml.tag", "yaml.duplicate_key"]


# -------------------------------------------------------------------- positions


NESTED = """\
version: 1
jobs:
  - name: first
  - name: second
    steps:
      - id: fetch
        inputs:
          url: "https://example.com"
          tries: 3
      - id: store
        inputs: {table: t, rows: [1, 2]}
"""


def test_positions_of_nested_paths() -> None:
    value, pos = load_yaml(NESTED, "flow.yaml")
    assert value["jobs"][1]["steps"][0]["inputs"]["url"] == "https://example.com"
    assert pos.get(()) == (1, 1)
    assert pos.get(("version",)) == (1, 10)
    assert pos.get(("jobs",)) == (3, 3)
    assert pos.get(("jobs", 0)) == (3, 5)
    assert pos.get(("jobs", 1)) == (4, 5)
    assert pos.get(("jobs", 1, "steps", 0)) == (6, 9)
    assert pos.get(("jobs", 1, "steps", 0, "inputs", "url")) == (8, 16)
    assert pos.get(("jobs", 1, "steps", 0, "inputs", "tries")) == (9, 18)
    assert pos.get(("jobs", 1, "steps", 1, "inputs")) == (11, 17)
    assert pos.get(("jobs", 1, "steps", 1, "inputs", "rows", 1)) == (11, 38)


def test_key_positions() -> None:
    _, pos = load_yaml(NESTED, "flow.yaml")
    assert pos.key(("jobs",)) == (2, 1)
    assert pos.key(("jobs", 1, "steps")) == (5, 5)
    assert pos.key(("jobs", 1, "steps", 0, "inputs", "url")) == (8, 11)
    assert pos.key(("jobs", 1, "steps", 1, "inputs", "rows")) == (11, 28)
    # not a mapping entry: falls back to the value position
    assert pos.key(("jobs", 1)) == (4, 5)


def test_positions_fall_back_to_nearest_ancestor() -> None:
    _, pos = load_yaml(NESTED, "flow.yaml")
    # a block mapping value starts at its first key
    assert pos.get(("jobs", 1, "steps", 0, "inputs", "missing")) == (8, 11)
    assert pos.get(["jobs", 7, "x"]) == (3, 3)
    assert pos.get(("nope", "deeper")) == (1, 1)
    assert pos.key(("jobs", 1, "steps", 0, "nope")) == (6, 9)
    assert Positions().get(("a",)) == (1, 1)


def test_positions_empty_value_and_list_root() -> None:
    _, pos = load_yaml("a:\nb: 2\n", "flow.yaml")
    assert pos.get(("a",)) == (1, 3)
    _, pos = load_yaml("- x\n- [y]\n", "flow.yaml")
    assert pos.get((1, 0)) == (2, 4)


def test_location() -> None:
    _, pos = load_yaml(NESTED, "flow.yaml")
    path = ("jobs", 1, "steps", 0, "inputs", "url")
    assert pos.location("flow.yaml", path) == Location(
        "flow.yaml", 8, 16, "jobs[1].steps[0].inputs.url"
    )
    assert pos.location("flow.yaml", path, key=True) == Location(
        "flow.yaml", 8, 11, "jobs[1].steps[0].inputs.url"
    )
    assert pos.location(None, ()) == Location(None, 1, 1, "")


def test_positions_crlf() -> None:
    _, pos = load_yaml(b"a: 1\r\nb:\r\n  c: x\r\n", "flow.yaml")
    assert pos.get(("b", "c")) == (3, 6)


# ------------------------------------------------------------------ format_path


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("jobs",), "jobs"),
        (("jobs", 1, "steps", 0, "inputs", "url"), "jobs[1].steps[0].inputs.url"),
        ((0,), "[0]"),
        ((0, "a"), "[0].a"),
        (("a b",), '["a b"]'),
        (("env", "my-key", "x"), 'env["my-key"].x'),
        (("x", 'say "hi"'), 'x["say \\"hi\\""]'),
        (("_ok", "A1"), "_ok.A1"),
        (("1abc",), '["1abc"]'),
        (("",), '[""]'),
        (("a.b",), '["a.b"]'),
        (["list", 2], "list[2]"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text
