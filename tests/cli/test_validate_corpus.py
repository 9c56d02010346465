"""`aetherflow validate` against the corpus of malformed and hostile flows (tests/corpus/bad).

Every corpus file starts with one or more header lines ``# expect: CODE LINE:COL``. Each
file must be refused with exit 2, no traceback, and exactly the expected issues, both in the
text form on stderr (``name.yaml:LINE:COL: CODE: ...``) and in the ``--json`` document.
Inputs that cannot live in the repository as text (empty, oversize, not UTF-8) are generated
here, as are the checks that YAML 1.1 look-alikes stay strings and that `run` refuses an
invalid flow before anything executes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "bad"
CASES = sorted(CORPUS.glob("*.yaml"))

_EXPECT = re.compile(r"# expect: ([a-z_]+\.[a-z0-9_]+) (\d+):(\d+)")
_CODE = r"[a-z_]+\.[a-z0-9_]+"
_ISSUE_KEYS = {"code", "message", "file", "line", "column", "path", "hint"}

Expected = list[tuple[str, int, int]]
Result = Any  # tests/conftest.py Result: exit_code, stdout, stderr
Cli = Callable[..., Result]


def expectations(path: Path) -> Expected:
    """The ``# expect:`` header of a corpus file, as sorted (code, line, column) triples."""
    found: Expected = []
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line.startswith("# expect:"):
            break
        m = _EXPECT.fullmatch(line.strip())
        assert m, f"{path.name}: malformed header line {line!r}"
        found.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return sorted(found)


def text_issues(stderr: str, name: str) -> Expected:
    """(code, line, column) of every issue line ``…name:LINE:COL: CODE: …`` on stderr."""
    pattern = re.compile(rf"{re.escape(name)}:(\d+):(\d+): ({_CODE}): ", re.MULTILINE)
    return sorted((code, int(line), int(col)) for line, col, code in pattern.findall(stderr))


def json_issues(stdout: str) -> tuple[dict[str, object], Expected]:
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    issues = doc["issues"]
    assert isinstance(issues, list)
    return doc, sorted((i["code"], i["line"], i["column"]) for i in issues)


def assert_refused(res: Result, name: str, expected: Expected) -> None:
    """Exit 2, nothing on stdout, no traceback, and exactly ``expected`` on stderr."""
    assert res.exit_code == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "Traceback" not in res.stdout
    assert res.stdout == ""
    for code, line, col in expected:
        assert f"{name}:{line}:{col}: {code}:" in res.stderr, res.stderr
    assert text_issues(res.stderr, name) == expected, res.stderr
    n = len(expected)
    assert res.stderr.rstrip().endswith(f"{n} problem{'s' if n != 1 else ''} found"), res.stderr


# ------------------------------------------------------------------------------ corpus


def test_corpus_is_large_and_every_file_says_what_it_expects() -> None:
    assert len(CASES) >= 45
    for path in CASES:
        assert expectations(path), f"{path.name} has no '# expect: CODE LINE:COL' header"


def test_corpus_covers_every_layer() -> None:
    codes = {code for path in CASES for code, _, _ in expectations(path)}
    for prefix in ("yaml.", "schema.", "inputs.", "flow.", "template.", "when."):
        assert any(c.startswith(prefix) for c in codes), prefix
    for code in (
        "yaml.syntax", "yaml.duplicate_key", "yaml.alias", "yaml.tag", "yaml.merge_key",
        "yaml.non_string_key", "yaml.multiple_documents", "yaml.empty", "yaml.too_deep",
        "schema.additional_property", "schema.required", "schema.type", "schema.enum",
        "schema.pattern", "schema.const", "schema.min_items", "schema.one_of",
        "flow.duplicate_job", "flow.duplicate_step", "flow.unknown_dependency",
        "flow.self_dependency", "flow.cycle", "flow.unknown_step_type", "flow.unknown_outcome",
        "flow.wait_in_lock", "template.syntax", "template.unknown_root", "template.unknown_step",
        "template.unknown_job", "template.result_outside_outputs", "when.syntax",
        "when.unknown_root",
    ):  # fmt: skip
        assert code in codes, f"no corpus case for {code}"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_corpus_text_output(cli: Cli, path: Path) -> None:
    res = cli("validate", path)
    assert_refused(res, path.name, expectations(path))


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_corpus_json_output(cli: Cli, path: Path) -> None:
    res = cli("validate", path, "--json")
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr + res.stdout
    doc, found = json_issues(res.stdout)
    assert doc["schema_version"] == 1
    assert doc["ok"] is False
    assert found == expectations(path)
    for issue in doc["issues"]:  # type: ignore[attr-defined]
        assert set(issue) == _ISSUE_KEYS
        assert str(issue["file"]).endswith(path.name)
        assert issue["message"]
        assert isinstance(issue["path"], str)


# ------------------------------------------------------------ generated hostile inputs


def test_empty_file_is_reported_at_1_1(cli: Cli, tmp_path: Path) -> None:
    for name, content in (("empty.yaml", b""), ("blank.yaml", b"\n\n   \n")):
        p = tmp_path / name
        p.write_bytes(content)
        assert_refused(cli("validate", p), name, [("yaml.empty", 1, 1)])


def test_oversize_file_is_refused_before_parsing(cli: Cli, tmp_path: Path) -> None:
    p = tmp_path / "huge.yaml"
    head = b"version: 1\nflow:\n  id: huge\n  description: "
    p.write_bytes(head + b"x" * (5 * 1024 * 1024) + b"\n")
    assert p.stat().st_size > 5 * 1024 * 1024
    res = cli("validate", p)
    assert_refused(res, "huge.yaml", [("yaml.too_large", 1, 1)])
    doc, found = json_issues(cli("validate", p, "--json").stdout)
    assert found == [("yaml.too_large", 1, 1)]


def test_file_not_utf8_is_located_at_the_first_bad_byte(cli: Cli, tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("version: 1\nflow:\n  id: caf\xe9\n".encode("latin-1"))
    res = cli("validate", p)
    assert_refused(res, "latin1.yaml", [("yaml.not_utf8", 3, 10)])
    assert "0xe9" in res.stderr
    _, found = json_issues(cli("validate", p, "--json").stdout)
    assert found == [("yaml.not_utf8", 3, 10)]


def test_utf16_file_is_not_utf8(cli: Cli, tmp_path: Path) -> None:
    p = tmp_path / "utf16.yaml"
    p.write_bytes("version: 1\n".encode("utf-16"))
    res = cli("validate", p)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert "yaml.not_utf8" in res.stderr


def test_billion_laughs_is_refused_at_the_first_anchor(cli: Cli, tmp_path: Path) -> None:
    lines = [
        "version: 1",
        "flow: {id: lol}",
        'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    for i in range(1, 30):  # 10**30 strings if anything ever expanded it
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    p = tmp_path / "lol.yaml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = cli("validate", p)
    assert_refused(res, "lol.yaml", [("yaml.alias", 3, 5)])


def test_deep_nesting_is_refused_not_a_recursion_error(cli: Cli, tmp_path: Path) -> None:
    p = tmp_path / "deep.yaml"
    p.write_text("version: 1\nmetadata: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    res = cli("validate", p)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert "RecursionError" not in res.stderr
    assert re.search(r"deep\.yaml:2:\d+: yaml\.too_deep: ", res.stderr), res.stderr


def test_hostile_file_in_a_real_process_prints_no_traceback(af: Cli, tmp_path: Path) -> None:
    src = CORPUS / "yaml_tag_python_object.yaml"
    p = tmp_path / src.name
    p.write_bytes(src.read_bytes())
    res = af("validate", p)
    assert_refused(res, src.name, expectations(src))


# ----------------------------------------------------------------------- other paths


VALID = """
version: 1
flow:
  id: fine
jobs:
  - id: a
    steps:
      - id: s
        type: noop
        inputs: {n: 1}
"""


def test_valid_flow_prints_one_ok_line(cli: Cli, write_flow: Callable[..., Path]) -> None:
    p = write_flow(VALID)
    res = cli("validate", p)
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    lines = res.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{p}: ok")
    assert "fine" in lines[0]


def test_valid_flow_json(cli: Cli, write_flow: Callable[..., Path]) -> None:
    res = cli("validate", write_flow(VALID), "--json")
    assert res.exit_code == 0
    assert res.stderr == ""
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 1
    assert doc["ok"] is True
    assert doc["issues"] == []
    assert doc["flow_id"] == "fine"


def test_missing_file_is_a_clear_usage_error(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "flow.yaml"
    res = cli("validate", missing)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert res.stdout == ""
    assert "flow.not_found" in res.stderr
    assert "does not exist" in res.stderr
    assert "flow.yaml" in res.stderr
    doc = json.loads(cli("validate", missing, "--json").stdout)
    assert doc["ok"] is False
    assert [i["code"] for i in doc["issues"]] == ["flow.not_found"]


def test_directory_instead_of_file(cli: Cli, tmp_path: Path) -> None:
    res = cli("validate", tmp_path)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert "flow.not_found" in res.stderr
    assert "directory" in res.stderr


def test_run_flow_yaml_alias_with_bad_flow_exits_2(cli: Cli, home: Path) -> None:
    bad = CORPUS / "schema_unknown_key_step.yaml"
    res = cli("run", "--flow-yaml", bad)
    assert res.exit_code == 2
    assert "Traceback" not in res.stderr
    assert f"{bad.name}:10:9: schema.additional_property:" in res.stderr
    assert not (home / "state.db").exists()


def test_run_of_an_invalid_flow_runs_nothing(
    cli: Cli, home: Path, tmp_path: Path, write_flow: Callable[..., Path]
) -> None:
    marker = tmp_path / "ran.txt"
    # Schema-valid, so the refusal comes from the later checks: nothing may have started.
    p = write_flow(f"""
        version: 1
        flow:
          id: refused
        jobs:
          - id: first
            steps:
              - id: touch
                type: external.process
                inputs: {{command: [touch, "{marker}"]}}
          - id: second
            depends_on: [first]
            steps:
              - id: s
                type: no_such_step_type
        """)
    res = cli("run", p)
    assert res.exit_code == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "flow.yaml:14:15: flow.unknown_step_type:" in res.stderr
    assert not marker.exists()
    assert not (home / "state.db").exists()
    assert not (home / "stores").exists()
    assert not list(home.rglob("*.db"))


def test_run_of_a_hostile_flow_runs_nothing(cli: Cli, home: Path) -> None:
    for name in (
        "yaml_billion_laughs.yaml",
        "flow_cycle_two_jobs.yaml",
        "template_unknown_root.yaml",
    ):
        res = cli("run", CORPUS / name)
        assert res.exit_code == 2, name
        assert "Traceback" not in res.stderr
        for code, line, col in expectations(CORPUS / name):
            assert f"{name}:{line}:{col}: {code}:" in res.stderr
    assert not (home / "state.db").exists()


# ----------------------------------------------- YAML 1.1 look-alikes are NOT errors


YAML11 = """
version: 1
flow:
  id: yaml11
  metadata:
    on: yes
    off: no
    y: n
    true: false-ish
    time: 12:30
    sexagesimal: 190:20:30
    date: 2026-11-20
    stamp: 2026-11-20T10:00:00Z
    octal: 012
    underscored: 1_000
    binary: 0b101
    null_word: nil
  params:
    at: {type: string, default: 12:30}
    day: {type: string, default: 2026-11-20}
    flag: {type: string, default: on}
jobs:
  - id: on
    steps:
      - id: yes
        type: noop
        inputs: {answer: no, at: 12:30, day: 2026-11-20, switch: off}
"""


def test_yaml11_values_validate(cli: Cli, write_flow: Callable[..., Path]) -> None:
    res = cli("validate", write_flow(YAML11))
    assert res.exit_code == 0, res.stderr
    assert res.stderr == ""
    assert ": ok" in res.stdout


def test_yaml11_values_stay_strings(write_flow: Callable[..., Path]) -> None:
    from aetherflow.model import thaw
    from aetherflow.spec import load_flow

    loaded = load_flow(str(write_flow(YAML11)))
    meta = loaded.data["flow"]["metadata"]
    assert meta == {
        "on": "yes",
        "off": "no",
        "y": "n",
        "true": "false-ish",
        "time": "12:30",
        "sexagesimal": "190:20:30",
        "date": "2026-11-20",
        "stamp": "2026-11-20T10:00:00Z",
        "octal": "012",
        "underscored": "1_000",
        "binary": "0b101",
        "null_word": "nil",
    }
    assert all(type(k) is str and type(v) is str for k, v in meta.items())
    flow = loaded.flow
    assert flow.jobs[0].id == "on"
    assert flow.jobs[0].steps[0].id == "yes"
    assert thaw(flow.jobs[0].steps[0].inputs) == {
        "answer": "no", "at": "12:30", "day": "2026-11-20", "switch": "off",
    }  # fmt: skip
    defaults = {name: p.default for name, p in flow.params.items()}
    assert defaults == {"at": "12:30", "day": "2026-11-20", "flag": "on"}
