"""YAML syntax errors are told in an operator's words, with the fix, at the parser's position,
whichever parser PyYAML uses (libyaml or its pure-Python one)."""

from __future__ import annotations

import pytest
import yaml

from aetherflow.errors import SpecError
from aetherflow.spec.loader import load_yaml

CASES = {
    "tab": ("version: 1\nflow:\n\tid: demo\n", 3, 1,
            "a tab character in the indentation of line 3: YAML indents with spaces only",
            "replace the tab(s) at the start of line 3 with spaces"),
    "tab_after_spaces": ("version: 1\njobs:\n  - id: a\n    steps:\n      - id: s\n\t      type: noop\n", 6, 1,
                         "a tab character in the indentation of line 6", "with spaces"),
    "indented_too_far": ("version: 1\nflow:\n  id: demo\n   description: x\n", 4, 15,
                         "line 4 is indented more than line 3 above it, so a new key cannot start there",
                         "indent it like line 3"),
    "indented_too_little": ("version: 1\nflow:\n  id: demo\n description: x\njobs: []\n", 4, 2,
                            "the indentation of line 4 does not match the keys of the mapping that starts at line 1",
                            "the keys of one mapping start in the same column"),
    "colon_in_value": ("version: 1\nflow:\n  id: demo\n  description: Load: the sales\n", 4, 20,
                       "': ' inside an unquoted value: YAML reads it as the start of a new key",
                       "put the whole value in quotes"),
    "list_item_for_key": ("a: 1\n- b\n", 2, 1, "a list item ('- ') where a key of the mapping that starts at line 1",
                          "indent the list under the key it belongs to"),
    "unclosed_list": ("version: 1\nflow:\n  id: demo\n  tags: [a, b\njobs: []\n", 5, None, "the [ ... ] list opened at line 4",
                      "close it with ']'"),
    "unclosed_quote": ('version: 1\nflow:\n  id: "demo\n', 4, 1, "a quoted string opened at line 3 is never closed",
                       "add the closing quote"),
    "reserved_character": ("version: 1\nflow:\n  id: @demo\n", 3, 7, "'@' cannot start an unquoted value in YAML",
                           'put the value in quotes, e.g. "@demo"'),
}


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML is built without libyaml here")
    if request.param == "python":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    return str(request.param)


@pytest.mark.parametrize("name", sorted(CASES))
def test_syntax_errors_say_the_cause_and_the_fix(parser: str, name: str) -> None:
    text, line, column, message, hint = CASES[name]
    with pytest.raises(SpecError) as info:
        load_yaml(text.encode(), "f.yaml")
    (issue,) = info.value.issues
    assert issue.code == "yaml.syntax"
    assert issue.location is not None and issue.location.line == line
    if column is not None:
        assert issue.location.column == column
    assert issue.message.startswith(message), issue.message
    assert hint in (issue.hint or ""), issue.hint
    for raw in ("cannot start any token", "did not find expected key", "mapping values are not allowed"):
        assert raw not in issue.message
