"""The one ``{{ PATH }}`` renderer: grammar, typing, defaults, escapes and errors."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest

from aetherflow.errors import TemplateError
from aetherflow.model import Masked, freeze
from aetherflow.template import (
    MISSING,
    Template,
    TemplateSyntaxError,
    Token,
    lookup,
    parse,
    render,
    tokens,
)

SCOPE: dict[str, Any] = {
    "params": {"date": "2024-01-31", "limit": 10, "full": True, "ratio": 0.5, "none": None},
    "steps": {
        "probe": {
            "outputs": {"items": ["a", "b", {"c": 3}], "meta": {"k": "v", "n": [1, 2]}},
            "count": 0,
        }
    },
    "env": {"TRICKY": "{{ params.date }}", "HOME_DIR": "/home/x"},
    "my-root": {"some-key": "dash"},
    "secrets": {"TOKEN": "s3cr3t"},
    "masked": Masked("steps.login.outputs.token"),
    "store": {"tok": Masked("steps.login.outputs.token")},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ params.limit }}", 10),
        ("{{params.limit}}", 10),
        ("{{   params.full   }}", True),
        ("{{ params.ratio }}", 0.5),
        ("{{ params.none }}", None),
        ("{{ steps.probe.outputs.items }}", ["a", "b", {"c": 3}]),
        ("{{ steps.probe.outputs.meta }}", {"k": "v", "n": [1, 2]}),
        ("{{ steps.probe.count }}", 0),
        ("{{ steps.probe.outputs.items.0 }}", "a"),
        ("{{ steps.probe.outputs.items.2.c }}", 3),
        ("{{ my-root.some-key }}", "dash"),
    ],
)
def test_single_token_keeps_type(text: str, expected: Any) -> None:
    result = render(text, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("day={{ params.date }}", "day=2024-01-31"),
        ("{{ params.limit }} rows", "10 rows"),
        (" {{ params.limit }}", " 10"),
        ("{{ params.full }}/{{ params.full }}", "true/true"),
        ("[{{ params.none }}]", "[]"),
        ("r={{ params.ratio }}", "r=0.5"),
        ("x={{ steps.probe.outputs.items }}", 'x=["a","b",{"c":3}]'),
        ("m={{ steps.probe.outputs.meta }}", 'm={"k":"v","n":[1,2]}'),
        ("{{ params.date }}{{ params.limit }}", "2024-01-3110"),
        ('{"a":{{ params.limit }}}', '{"a":10}'),
        ("{{{ params.limit }}}", "{10}"),
    ],
)
def test_mixed_text_stringifies(text: str, expected: str) -> None:
    assert render(text, SCOPE) == expected


def test_json_keeps_unicode() -> None:
    assert render("v={{ u }}", {"u": {"name": "café"}}) == 'v={"name":"café"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ params.nope:fallback }}", "fallback"),
        ("{{ params.nope :  spaced out  }}", "spaced out"),
        ("{{ params.nope: }}", ""),
        ("{{params.nope:}}", ""),
        ("{{ params.nope: a:b:c }}", "a:b:c"),
        ("{{ params.nope:http://x:8080/p }}", "http://x:8080/p"),
        ("{{ params.nope:42 }}", "42"),
        ("n={{ params.nope:7 }}!", "n=7!"),
        ("{{ params.limit:99 }}", 10),
        ("{{ params.none:x }}", None),
    ],
)
def test_defaults(text: str, expected: Any) -> None:
    assert render(text, SCOPE) == expected


@pytest.mark.parametrize(
    ("text", "dotted"),
    [
        ("{{ params.nope }}", "params.nope"),
        ("a {{ steps.probe.outputs.items.9 }} b", "steps.probe.outputs.items.9"),
        ("{{ nothing }}", "nothing"),
        ("{{ params.date.year }}", "params.date.year"),
        ("{{ steps.probe.outputs.items.x }}", "steps.probe.outputs.items.x"),
    ],
)
def test_missing_path_names_it(text: str, dotted: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(text, SCOPE)
    assert not isinstance(info.value, TemplateSyntaxError)
    assert info.value.code == "template.missing"
    assert str(info.value) == f"template path '{dotted}' not found"
    assert info.value.hint


def test_missing_hint_lists_keys() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ params.nope }}", SCOPE)
    assert info.value.hint is not None
    assert "date" in info.value.hint and "limit" in info.value.hint


@pytest.mark.parametrize(
    "text", ["{{ masked }}", "x={{ masked }}", "{{ store.tok }}", "{{ masked.x }}"]
)
def test_masked_value_is_refused(text: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(text, SCOPE)
    assert info.value.code == "template.masked_secret"
    assert "secret" in str(info.value)
    assert "masked" in str(info.value)
    assert info.value.hint is not None and "secrets.NAME" in info.value.hint


def test_masked_nested_in_rendered_value_stays_masked() -> None:
    assert render("{{ store }}", SCOPE) == {"tok": Masked("steps.login.outputs.token")}
    assert render("x={{ store }}", SCOPE) == 'x={"tok":"***"}'


def test_secrets_root_renders() -> None:
    assert render("{{ secrets.TOKEN }}", SCOPE) == "s3cr3t"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\{{ params.date }}", "{{ params.date }}"),
        ("a \\{{ b }} c", "a {{ b }} c"),
        ("\\{{ x }} {{ params.limit }}", "{{ x }} 10"),
        ("\\{{", "{{"),
        ("\\{{ not a path at all", "{{ not a path at all"),
        ("${HOME}", "${HOME}"),
        ("${HOME} and {x} and {} and { }", "${HOME} and {x} and {} and { }"),
        ("}} stray", "}} stray"),
        ("single { brace", "single { brace"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_escapes_and_ordinary_text(text: str, expected: str) -> None:
    assert render(text, SCOPE) == expected


def test_one_pass_never_rerenders_substituted_values() -> None:
    assert render("{{ env.TRICKY }}", SCOPE) == "{{ params.date }}"
    assert render("v={{ env.TRICKY }}", SCOPE) == "v={{ params.date }}"
    assert render({"a": ["{{ env.TRICKY }}"]}, SCOPE) == {"a": ["{{ params.date }}"]}


def test_deep_render_of_nested_values() -> None:
    value = MappingProxyType(
        {
            "sql": "select * from t where d = '{{ params.date }}'",
            "limit": "{{ params.limit }}",
            "list": ("{{ params.full }}", 1, None, ["{{ steps.probe.outputs.items.1 }}"]),
            "n": 5,
            "flag": False,
        }
    )
    assert render(value, SCOPE) == {
        "sql": "select * from t where d = '2024-01-31'",
        "limit": 10,
        "list": [True, 1, None, ["b"]],
        "n": 5,
        "flag": False,
    }


@pytest.mark.parametrize("value", [None, 3, 2.5, True, b"{{ x }}"])
def test_other_values_unchanged(value: Any) -> None:
    assert render(value, SCOPE) is value


def test_mapping_proxy_scope_and_frozen_values() -> None:
    scope = freeze({"steps": {"p": {"rows": [{"id": 1}, {"id": 2}]}}})
    assert isinstance(scope, MappingProxyType)
    assert render("{{ steps.p.rows.1.id }}", scope) == 2
    rows = render("{{ steps.p.rows }}", scope)
    assert rows == [{"id": 1}, {"id": 2}]
    assert type(rows) is list and type(rows[0]) is dict
    assert render("r={{ steps.p.rows }}", scope) == 'r=[{"id":1},{"id":2}]'


def test_parse_fast_path_returns_same_string() -> None:
    text = "no tokens here ${X}"
    assert parse(text) is text


def test_parse_compiles_parts() -> None:
    compiled = parse("a {{ x.y:d }} b")
    assert isinstance(compiled, Template)
    assert compiled.parts == ("a ", Token(("x", "y"), "d", "{{ x.y:d }}"), " b")
    assert compiled.single is None
    assert parse("{{ x }}") == Template("{{ x }}", (Token(("x",), None, "{{ x }}"),))


def test_escape_only_string_is_a_template_and_renders_once() -> None:
    compiled = parse("\\{{ x }}")
    assert isinstance(compiled, Template)
    assert compiled.tokens == ()
    assert render(compiled, {}) == "{{ x }}"


def test_render_accepts_precompiled_template() -> None:
    compiled = parse("{{ params.limit }}")
    assert render(compiled, SCOPE) == 10
    assert render({"k": compiled}, SCOPE) == {"k": 10}


def test_tokens_walks_nested_values() -> None:
    value = {
        "a": "{{ params.date }} {{ steps.x.y:z }}",
        "b": ["\\{{ skipped }}", ("{{ env.HOME }}",)],
        "c": MappingProxyType({"d": "{{ secrets.K }}"}),
        "e": 3,
    }
    found = [(t.path, t.default) for t in tokens(value)]
    assert found == [
        (("params", "date"), None),
        (("steps", "x", "y"), "z"),
        (("env", "HOME"), None),
        (("secrets", "K"), None),
    ]


def test_tokens_raises_on_malformed() -> None:
    with pytest.raises(TemplateSyntaxError):
        list(tokens({"a": ["ok {{ a..b }}"]}))


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("{{", 0),
        ("abc {{ x", 4),
        ("{{ x }", 0),
        ("{{ }}", 0),
        ("ab{{}}", 2),
        ("{{ a..b }}", 0),
        ("x {{ 1abc }}", 2),
        ("{{ a b }}", 0),
        ("{{ a. }}", 0),
        ("{{ .a }}", 0),
        ("{{ :default }}", 0),
        ("{{ a }} and {{ b c }}", 12),
        ("{{ a {{ b }}", 0),
        ("\\{{ ok }} {{ bad path }}", 10),
        ("{{ a/b }}", 0),
        ("{{ é }}", 0),
    ],
)
def test_syntax_errors_have_offsets(text: str, offset: int) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse(text)
    assert info.value.offset == offset
    assert info.value.code == "template.syntax"
    assert isinstance(info.value, TemplateError)
    with pytest.raises(TemplateSyntaxError):
        render(text, SCOPE)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("params", "limit"), 10),
        (("steps", "probe", "outputs", "items", "1"), "b"),
        (("steps", "probe", "outputs", "items", "3"), MISSING),
        (("steps", "probe", "outputs", "items", "-1"), MISSING),
        (("steps", "probe", "outputs", "items", "x"), MISSING),
        (("params", "date", "0"), MISSING),  # strings are not walked
        (("params", "nope"), MISSING),
        (("nope",), MISSING),
        (("params", "none"), None),
        ((), SCOPE),
    ],
)
def test_lookup(path: tuple[str, ...], expected: Any) -> None:
    assert lookup(SCOPE, path) is expected or lookup(SCOPE, path) == expected


def test_lookup_does_not_walk_objects() -> None:
    class Obj:
        attr = 1

    assert lookup({"o": Obj()}, ("o", "attr")) is MISSING


def test_lookup_int_keys_and_proxies() -> None:
    assert lookup({"m": {0: "zero"}}, ("m", "0")) == "zero"
    assert lookup(MappingProxyType({"a": MappingProxyType({"b": (1, 2)})}), ["a", "b", "1"]) == 2


def test_missing_sentinel() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    with pytest.raises(AttributeError):
        MISSING.x = 1  # type: ignore[attr-defined]


def test_masked_repr() -> None:
    assert repr(Masked("x")) == "'***'"
    assert Masked("x").name == "x"


# ---------------------------------------------------------------------------------------------
# the run root


def test_run_scope_is_derived_from_the_recorded_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from aetherflow.template import run_scope

    monkeypatch.setenv("TZ", "Pacific/Auckland")  # UTC+13 in January: the local day is ahead
    time.tzset()
    try:
        started = 1704153600.0 + 3600 * 12  # 2024-01-02T12:00:00Z = 2024-01-03 01:00 in Auckland
        scope = run_scope("r1", started, 2)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert scope == {"id": "r1", "attempt": 2, "started_at": "2024-01-02T12:00:00+00:00", "date": "2024-01-02",
                     "local_date": "2024-01-03"}
    assert render("sales-{{ run.date }}.csv", {"run": scope}) == "sales-2024-01-02.csv"
    assert "attempt" not in run_scope("r1", started)


def test_a_missing_env_variable_is_named_in_the_hint_without_the_others() -> None:
    env = {f"VAR_{i:02d}": "x" for i in range(30)}
    with pytest.raises(TemplateError) as info:
        render("{{ env.WAREHOUSE_DSN }}", {"env": env})
    assert info.value.code == "template.missing"
    hint = info.value.hint or ""
    assert hint.startswith("set WAREHOUSE_DSN (in the environment")
    assert "'{{ env.WAREHOUSE_DSN:VALUE }}'" in hint
    assert "VAR_" not in hint


def test_an_empty_environment_variable_takes_the_default() -> None:
    """`{{ env.X:d }}` with X="" is d (aetherflow-core, and the shell's ${X:-d}); other roots and
    tokens without a default keep the empty string."""
    scope = {"env": {"EMPTY": "", "SET": "v"}, "params": {"blank": ""}}
    assert render("{{ env.EMPTY:fallback }}", scope) == "fallback"
    assert render("x={{ env.EMPTY: d }}", scope) == "x=d"
    assert render("{{ env.EMPTY: }}", scope) == ""
    assert render("{{ env.EMPTY }}", scope) == ""
    assert render("{{ env.SET:fallback }}", scope) == "v"
    assert render("{{ params.blank:fallback }}", scope) == ""
