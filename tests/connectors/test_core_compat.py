"""Flows written for aetherflow-core run unchanged: the reference's inputs of `check_items` and
`external.process`, through `aetherflow validate` and `aetherflow run`. (zip/unzip, mail_send,
http_request and db:sqlalchemy have theirs next to their servers: test_zip, test_smtp,
test_http, test_postgres.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherflow.connectors.dburl import named_to_pyformat
from aetherflow.errors import ConnectorError


def _validate_and_run(cli, write_flow, run_flow, text: str):  # type: ignore[no-untyped-def]
    flow = write_flow(text)
    res = cli("validate", str(flow))
    assert res.exit_code == 0, res.stderr
    return run_flow(flow)


def test_check_items_like_the_reference(cli, write_flow, run_flow) -> None:
    text = """
version: 1
flow:
  id: probes
  workspace: {root: work}
jobs:
  - id: csv
    steps:
      - {id: p, type: check_items, inputs: {items: "a, b,c"}}
      - {id: blanks, type: check_items, inputs: {items: " , ,x,"}}
  - id: empty_ok
    steps:
      - {id: p, type: check_items, inputs: {items: [], min_count: 0}, on_no_data: skip_job}
      - {id: after, type: noop}
  - id: empty_string
    steps:
      - {id: p, type: check_items, inputs: {items: "", min_count: 1}, on_no_data: skip_job}
      - {id: after, type: noop}
  - id: too_few
    steps:
      - {id: p, type: check_items, inputs: {items: "a,b", min_count: 3}}
"""
    run = _validate_and_run(cli, write_flow, run_flow, text)
    assert run.result.exit_code == 0, run.result.stderr
    p = run.step("csv", "p")
    assert p["status"] == "SUCCESS" and p["outputs"]["count"] == 3 and p["outputs"]["items"] == ["a", "b", "c"]
    assert run.step("csv", "blanks")["outputs"]["items"] == ["x"]
    ok = run.step("empty_ok", "p")
    assert ok["status"] == "SUCCESS" and ok["outputs"] == {"count": 0, "items": [], "has_data": True}
    assert run.step("empty_ok", "after")["status"] == "SUCCESS"  # min_count: 0 really lets it through
    assert run.step("empty_string", "p")["status"] == "SKIPPED"
    assert run.step("empty_string", "after")["status"] == "SKIPPED"
    few = run.step("too_few", "p")
    assert few["status"] == "SKIPPED" and few["outputs"]["has_data"] is False
    assert few["reason"] == "2 item(s), fewer than 3"


PROC_HEAD = """
version: 1
flow:
  id: procs
  workspace: {root: work}
jobs:
"""


def test_external_process_reference_inputs(cli, write_flow, run_flow, tmp_path: Path) -> None:
    text = PROC_HEAD + """
  - id: backoff
    steps:
      - id: flaky
        type: external.process
        inputs:
          command: ["sh", "-c", "date +%s%N >> artifacts/times; [ $(wc -l < artifacts/times) -ge 3 ]"]
          retry: {max_attempts: 3, backoff_seconds: 0.2, backoff_multiplier: 4, max_backoff_seconds: 0.3,
                  retry_on_exit_codes: 1}
  - id: globs
    steps:
      - id: make
        type: external.process
        inputs:
          command: ["sh", "-c", "mkdir -p artifacts/out && printf 1 > artifacts/out/a.csv"]
          success: {exit_codes: 0, require_glob: "out/*.csv", require_files: out/a.csv}
  - id: glob_missing
    steps:
      - id: make
        type: external.process
        inputs:
          command: ["true"]
          success: {require_glob: ["out/*.parquet"]}
  - id: merge
    steps:
      - id: seed
        type: external.process
        inputs: {command: ["sh", "-c", "mkdir -p artifacts/out/final && printf old > artifacts/out/final/a.txt && printf keep > artifacts/out/final/keep.txt"]}
      - id: write
        type: external.process
        inputs:
          command: ["sh", "-c", "printf new > \\"$AETHERFLOW_OUTPUT_DIR/a.txt\\" && printf b > \\"$AETHERFLOW_OUTPUT_DIR/b.txt\\""]
          idempotency: {strategy: atomic_dir, temp_output_dir: out/.tmp_run, final_output_dir: out/final,
                        atomic_rename: false}
  - id: marker
    steps:
""" + "".join(f"""      - id: {name}
        type: external.process
        inputs:
          command: ["sh", "-c", "mkdir -p artifacts/out && echo run >> runs.txt && printf spark > artifacts/out/_SUCCESS"]
          idempotency: {{strategy: marker}}
          success: {{marker_file: out/_SUCCESS}}
""" for name in ("first", "second"))
    run = _validate_and_run(cli, write_flow, run_flow, text)
    assert run.result.exit_code == 1  # glob_missing fails

    flaky = run.step("backoff", "flaky")
    assert flaky["status"] == "SUCCESS" and flaky["outputs"]["attempts"] == 3
    times = (tmp_path / "work" / "procs" / "backoff" / run.run_id / "artifacts" / "times").read_text().split()
    gaps = [(int(b) - int(a)) / 1e9 for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.2  # backoff_seconds
    assert 0.3 <= gaps[1] < 0.75  # 0.2 * 4 = 0.8, capped by max_backoff_seconds

    assert run.step("globs", "make")["status"] == "SUCCESS"
    err = run.step("glob_missing", "make")["error"]
    assert "required 'out/*.parquet' is missing" in err

    final = Path(run.step("merge", "write")["outputs"]["target_dir"])
    assert {p.name: p.read_text() for p in final.iterdir()} == {"a.txt": "new", "b.txt": "b", "keep.txt": "keep"}
    assert not (final.parent / ".tmp_run").exists()

    first, second = run.step("marker", "first"), run.step("marker", "second")
    assert first["status"] == "SUCCESS" and "idempotent_skip" not in first["outputs"]
    assert second["status"] == "SUCCESS" and second["outputs"]["idempotent_skip"] is True
    marker = Path(second["outputs"]["marker_path"])
    assert marker.name == "_SUCCESS" and marker.read_text() == "spark"  # the command's file, not overwritten
    assert marker.parent.parent.name == "artifacts"  # relative paths are relative to artifacts/, as there
    assert (marker.parent.parent.parent / "runs.txt").read_text() == "run\n"  # the second step did not run


@pytest.mark.parametrize(
    ("sql", "expected", "binds"),
    [
        ("SELECT * FROM t WHERE id = :id", "SELECT * FROM t WHERE id = %(id)s", ["id"]),
        ("SELECT :id::int, x::text", "SELECT %(id)s::int, x::text", ["id"]),
        ("SELECT 'a:b', '10:30', 'it''s :x', :x", "SELECT 'a:b', '10:30', 'it''s :x', %(x)s", ["x"]),
        (r"SELECT E'\' :x', :x", r"SELECT E'\' :x', %(x)s", ["x"]),  # an escaped quote inside
        (r"SELECT E'\\', :x", r"SELECT E'\\', %(x)s", ["x"]),  # an escaped backslash ends it
        ('SELECT "odd:col" FROM t WHERE a = :x', 'SELECT "odd:col" FROM t WHERE a = %(x)s', ["x"]),
        ("SELECT name LIKE 'a%' AND pct > 5 % 2 AND id = :x", "SELECT name LIKE 'a%%' AND pct > 5 %% 2 AND id = %(x)s", ["x"]),
        ("SELECT $$ :x $$, $f$ :x $f$, :x", "SELECT $$ :x $$, $f$ :x $f$, %(x)s", ["x"]),
        ("SELECT :x -- note :y 5%\n/* :y */", "SELECT %(x)s -- note :y 5%%\n/* :y */", ["x"]),
        (r"SELECT arr[1:2], \:x, :x", "SELECT arr[1:2], :x, %(x)s", ["x"]),
    ],
)
def test_named_binds_become_pyformat(sql: str, expected: str, binds: list[str]) -> None:
    params = {b: 1 for b in binds}
    assert named_to_pyformat("db", sql, params) == (expected, params)


def test_sql_without_named_binds_is_unchanged() -> None:
    for sql in ("SELECT %(n)s", "SELECT 'a%' WHERE x = %s", "SELECT x::int"):
        assert named_to_pyformat("db", sql, {"n": 1})[0] == sql
    with pytest.raises(ConnectorError, match=r"uses :b but params has no such key"):
        named_to_pyformat("db", "SELECT :a, :b", {"a": 1})


def test_check_items_needs_items_and_null_is_empty(cli, write_flow, run_flow) -> None:
    """A probe without items is a mistake (aetherflow-core requires them); `items: null` (an
    empty template result, say) is an empty list."""
    missing = write_flow("""
version: 1
flow: {id: probes}
jobs:
  - id: a
    steps:
      - {id: p, type: check_items}
""", name="missing.yaml")
    res = cli("validate", str(missing))
    assert res.exit_code == 2 and "inputs.required" in res.stderr and "'items'" in res.stderr, res.stderr
    res = cli("run", str(missing))
    assert res.exit_code == 2 and "inputs.required" in res.stderr
    nulls = write_flow("""
version: 1
flow: {id: probes, workspace: {root: work}}
jobs:
  - id: a
    steps:
      - {id: p, type: check_items, inputs: {items: null}, on_no_data: skip_job}
      - {id: after, type: noop}
""")
    run = run_flow(nulls)
    assert run.result.exit_code == 0, run.result.stderr
    p = run.step("a", "p")
    assert p["status"] == "SKIPPED" and p["outputs"]["count"] == 0 and run.step("a", "after")["status"] == "SKIPPED"
