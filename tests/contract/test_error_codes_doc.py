"""Every issue code aetherflow can emit is documented in docs/error-codes.md.

Codes are found in the sources, not in a hand-kept list:

* string literals anywhere in ``aetherflow/`` that look like a code (``yaml.alias``,
  ``flow.cycle``, ``yaml.not_utf8`` ...);
* the ``schema.*`` / ``inputs.*`` families, whose suffixes the schema error mapper builds
  (``spec/schema.py``: the ``_SIMPLE_CODES`` table, ``code = ...`` assignments and the first
  argument of its ``issue(...)`` calls);
* the ``template.*`` / ``when.*`` families built as ``f"{kind}.suffix"`` in
  ``spec/semantic.py``, for every ``kind`` passed to ``_check_path``.

Each must appear in the doc in backticks, and every code the doc's tables list must exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "aetherflow"
DOC = ROOT / "docs" / "error-codes.md"
CORPUS = ROOT / "tests" / "corpus" / "bad"

FAMILIES = ("yaml", "schema", "inputs", "flow", "template", "when")
# The brief's pattern is [a-z_]+ after the dot; digits are allowed too so that
# `yaml.not_utf8` is not missed.
CODE = re.compile(rf"^(?:{'|'.join(FAMILIES)})\.[a-z][a-z0-9_]*$")
SUFFIX = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA_PREFIXES = ("schema", "inputs")  # SchemaValidator(prefix="schema"), inputs_validator()


def _trees() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PKG.rglob("*.py"))}


def literal_codes() -> set[str]:
    found: set[str] = set()
    for tree in _trees().values():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CODE.match(node.value)
            ):
                found.add(node.value)
    return found


def schema_suffixes() -> set[str]:
    tree = ast.parse((PKG / "spec" / "schema.py").read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if "_SIMPLE_CODES" in names and isinstance(node.value, ast.Dict):
                out |= {v.value for v in node.value.values if isinstance(v, ast.Constant)}
            elif "code" in names:  # code = "one_of" if ... else "any_of"; .get(v, "invalid")
                out |= {
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant)
                    and isinstance(c.value, str)
                    and SUFFIX.match(c.value)
                }
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "issue"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def kind_codes() -> set[str]:
    """``f"{kind}.suffix"`` codes of spec/semantic.py, for each kind given to _check_path."""
    tree = ast.parse((PKG / "spec" / "semantic.py").read_text(encoding="utf-8"))
    suffixes: set[str] = set()
    kinds: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and len(node.values) == 2:
            head, tail = node.values
            if (
                isinstance(head, ast.FormattedValue)
                and isinstance(head.value, ast.Name)
                and head.value.id == "kind"
                and isinstance(tail, ast.Constant)
                and isinstance(tail.value, str)
                and tail.value.startswith(".")
            ):
                suffixes.add(tail.value[1:])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_check_path"
            and node.args
            and isinstance(node.args[-1], ast.Constant)
        ):
            kinds.add(node.args[-1].value)
    return {f"{k}.{s}" for k in kinds for s in suffixes}


def emitted_codes() -> set[str]:
    codes = literal_codes() | kind_codes()
    codes |= {f"{p}.{s}" for p in SCHEMA_PREFIXES for s in schema_suffixes()}
    return codes


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_scan_finds_every_kind_of_code() -> None:
    codes = emitted_codes()
    assert len(codes) >= 50, sorted(codes)
    for code in (
        "yaml.not_utf8", "yaml.alias", "flow.cycle", "flow.wait_in_lock", "flow.not_found",
        "schema.additional_property", "schema.required", "schema.one_of", "schema.invalid",
        "inputs.additional_property", "inputs.min_items", "template.unknown_root",
        "template.result_outside_outputs", "when.unknown_step", "when.result_outside_outputs",
    ):  # fmt: skip
        assert code in codes, code
    assert {"template", "when"} <= {c.split(".")[0] for c in kind_codes()}


def test_every_emitted_code_is_documented() -> None:
    text = doc_text()
    missing = sorted(c for c in emitted_codes() if f"`{c}`" not in text)
    assert not missing, f"add these codes to docs/error-codes.md: {missing}"


def test_documented_codes_exist() -> None:
    """Every code in the first column of a table in the doc is one the code base emits."""
    listed = set(re.findall(r"^\| `([a-z_]+\.[a-z0-9_]+)` \|", doc_text(), re.MULTILINE))
    assert listed
    stale = sorted(c for c in listed if CODE.match(c) and c not in emitted_codes())
    assert not stale, f"documented but never emitted: {stale}"


def test_every_corpus_code_is_documented() -> None:
    text = doc_text()
    expect = re.compile(r"^# expect: (\S+) \d+:\d+", re.MULTILINE)
    codes = {
        c
        for p in CORPUS.glob("*.yaml")
        for c in expect.findall(p.read_bytes().decode("utf-8", "replace"))
    }
    assert codes
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert not missing, missing
