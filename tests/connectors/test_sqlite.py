"""db_query / db_extract against a real SQLite file, through real `aetherflow run`s."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest

from aetherflow.connectors.sqlite import SqliteConnector
from aetherflow.errors import ConnectorError

ROWS = [
    (1, "alpha", 10.5, "plain"),
    (2, "beta", 0.25, "tab\there, comma, \"quote\""),
    (3, "gamma ü", None, "line1\nline2"),
    (4, "delta", 7.0, None),
]


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, amount REAL, note TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ROWS)
    conn.close()
    return db


def flow_text(db: Path, steps: str, driver: str = "sqlite3", config: str | None = None) -> str:
    cfg = config or f"{{path: '{db}'}}"
    return f"""
version: 1
flow:
  id: shop
  workspace: {{root: work}}
resources:
  shop:
    kind: db
    driver: {driver}
    config: {cfg}
jobs:
  - id: extract
    steps:
{steps}
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_query_and_extract_all_formats(write_flow, run_flow, shop_db: Path, tmp_path: Path) -> None:
    steps = """
      - id: count
        type: db_query
        inputs: {resource: shop, sql: "SELECT count(*) AS n, max(amount) AS top FROM orders WHERE amount > ?", params: [1]}
      - id: named
        type: db_query
        inputs: {resource: shop, sql: "SELECT id, name FROM orders WHERE name = :n", params: {n: beta}}
      - id: tsv
        type: db_extract
        inputs: {resource: shop, sql: "SELECT id, name, amount, note FROM orders ORDER BY id", output: out/orders.tsv}
      - id: csv
        type: db_extract
        inputs: {resource: shop, sql: "SELECT id, name, amount, note FROM orders ORDER BY id", output: orders.csv, format: csv}
      - id: jsonl
        type: db_extract
        inputs: {resource: shop, sql: "SELECT id, name, amount, note FROM orders ORDER BY id", format: jsonl, batch_size: 1}
"""
    run = run_flow(write_flow(flow_text(shop_db, steps)))
    assert run.result.exit_code == 0, run.result.stderr
    assert run.doc["status"] == "SUCCESS"

    count = run.step("extract", "count")["outputs"]
    assert count == {"rows": [{"n": 2, "top": 10.5}], "row_count": 1, "columns": ["n", "top"]}
    assert run.step("extract", "named")["outputs"]["rows"] == [{"id": 2, "name": "beta"}]

    tsv = run.step("extract", "tsv")["outputs"]
    path = Path(tsv["path"])
    assert path.name == "orders.tsv" and path.parent.name == "out" and path.parent.parent.name == "artifacts"
    assert path.is_relative_to(tmp_path / "work" / "shop" / "extract")
    data = path.read_bytes()
    assert tsv["sha256"] == sha256(path) and tsv["bytes"] == len(data)
    assert tsv["row_count"] == 4 and tsv["format"] == "tsv" and tsv["columns"] == ["id", "name", "amount", "note"]
    lines = data.decode("utf-8").split("\n")
    assert lines[0] == "id\tname\tamount\tnote"
    assert lines[1] == "1\talpha\t10.5\tplain"
    assert lines[-1] == ""  # ends with a newline
    parsed = list(csv.reader(io.StringIO(data.decode()), delimiter="\t"))
    assert parsed[1:] == [["1", "alpha", "10.5", "plain"], ["2", "beta", "0.25", "tab\there, comma, \"quote\""],
                          ["3", "gamma ü", "", "line1\nline2"], ["4", "delta", "7.0", ""]]

    c = run.step("extract", "csv")["outputs"]
    cpath = Path(c["path"])
    assert c["sha256"] == sha256(cpath) and c["format"] == "csv" and c["row_count"] == 4
    rows = list(csv.reader(io.StringIO(cpath.read_text(encoding="utf-8"))))
    assert rows[0] == ["id", "name", "amount", "note"]
    assert rows[2] == ["2", "beta", "0.25", "tab\there, comma, \"quote\""]
    assert '"tab\there, comma, ""quote"""' in cpath.read_text(encoding="utf-8")

    j = run.step("extract", "jsonl")["outputs"]
    jpath = Path(j["path"])
    assert jpath.name == "jsonl.jsonl"  # default name: <step id>.<format>
    assert j["sha256"] == sha256(jpath) and j["bytes"] == jpath.stat().st_size
    objs = [json.loads(line) for line in jpath.read_text(encoding="utf-8").splitlines()]
    assert objs == [dict(zip(["id", "name", "amount", "note"], r, strict=True)) for r in ROWS]
    # written atomically: no temp files left beside the artifacts
    assert not [p for p in jpath.parent.rglob(".*")]


def test_empty_result_is_a_header_only_file_unless_skipped(write_flow, run_flow, shop_db: Path) -> None:
    steps = """
      - id: none
        type: db_extract
        inputs: {resource: shop, sql: "SELECT * FROM orders WHERE id < 0", output: none.tsv, skip_if_empty: true}
      - id: empty_file
        type: db_extract
        inputs: {resource: shop, sql: "SELECT id, name FROM orders WHERE id < 0", output: empty.csv, format: csv}
      - id: gated
        type: db_extract
        on_no_data: skip_job
        inputs: {resource: shop, sql: "SELECT * FROM orders WHERE id < 0", skip_if_empty: true}
      - id: never
        type: db_query
        inputs: {resource: shop, sql: "SELECT 1"}
"""
    run = run_flow(write_flow(flow_text(shop_db, steps)))
    assert run.result.exit_code == 0, run.result.stderr
    none = run.step("extract", "none")
    assert none["status"] == "SKIPPED" and none["reason"] == "query returned no rows"
    assert none["outputs"]["row_count"] == 0 and none["outputs"]["has_data"] is False
    empty = run.step("extract", "empty_file")  # aetherflow-core's behaviour, the default
    assert empty["status"] == "SUCCESS"
    epath = Path(empty["outputs"]["path"])
    assert epath.read_text() == "id,name\n" and empty["outputs"]["row_count"] == 0
    assert empty["outputs"]["rows"] == 0 and empty["outputs"]["output"] == str(epath)
    assert not (epath.parent / "none.tsv").exists()
    assert run.step("extract", "never")["status"] == "SKIPPED"
    assert run.doc["jobs"]["extract"] == "SKIPPED"


def test_too_many_rows_tells_to_use_db_extract(write_flow, run_flow, shop_db: Path) -> None:
    steps = """
      - id: big
        type: db_query
        inputs: {resource: shop, sql: "SELECT * FROM orders", max_rows: 3}
"""
    run = run_flow(write_flow(flow_text(shop_db, steps)))
    assert run.result.exit_code == 1
    err = run.step("extract", "big")["error"]
    assert "more than max_rows=3 rows" in err and "db_extract" in err


def test_sql_error_and_statements(write_flow, run_flow, shop_db: Path) -> None:
    steps = """
      - id: insert
        type: db_query
        inputs: {resource: shop, sql: "INSERT INTO orders (id, name) VALUES (?, ?)", params: [9, nine]}
      - id: check
        type: db_query
        inputs: {resource: shop, sql: "SELECT name FROM orders WHERE id = 9"}
      - id: broken
        type: db_query
        inputs: {resource: shop, sql: "SELECT * FROM no_such_table"}
"""
    run = run_flow(write_flow(flow_text(shop_db, steps)))
    assert run.result.exit_code == 1
    assert run.step("extract", "insert")["outputs"] == {"rows": [], "row_count": 0, "columns": []}
    assert run.step("extract", "check")["outputs"]["rows"] == [{"name": "nine"}]
    err = run.step("extract", "broken")["error"]
    assert "resource 'shop': query failed" in err and "no such table: no_such_table" in err
    with sqlite3.connect(shop_db) as conn:  # committed
        assert conn.execute("SELECT name FROM orders WHERE id = 9").fetchone() == ("nine",)
    conn.close()


def test_sqlalchemy_url_alias(write_flow, run_flow, shop_db: Path) -> None:
    steps = """
      - id: count
        type: db_query
        inputs: {resource: shop, sql: "SELECT count(*) AS n FROM orders"}
"""
    text = flow_text(shop_db, steps, driver="sqlalchemy", config=f"{{url: 'sqlite:///{shop_db}'}}")
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 0, run.result.stderr
    assert run.step("extract", "count")["outputs"]["rows"] == [{"n": 4}]


def test_output_outside_workspace_is_refused(write_flow, run_flow, shop_db: Path, tmp_path: Path) -> None:
    steps = """
      - id: escape
        type: db_extract
        inputs: {resource: shop, sql: "SELECT * FROM orders", output: ../../../../../escaped.tsv}
"""
    other = f"""
  - id: other
    steps:
      - id: absolute
        type: db_extract
        inputs: {{resource: shop, sql: "SELECT * FROM orders", output: "{tmp_path / 'abs.tsv'}"}}
"""
    run = run_flow(write_flow(flow_text(shop_db, steps) + other))
    assert run.result.exit_code == 1
    assert "outside the flow workspace" in run.step("extract", "escape")["error"]
    assert "outside the flow workspace" in run.step("other", "absolute")["error"]
    assert not list(tmp_path.rglob("escaped.tsv")) and not (tmp_path / "abs.tsv").exists()


def test_validate_checks_inputs(cli, write_flow, shop_db: Path) -> None:
    steps = """
      - id: bad
        type: db_extract
        inputs: {resource: shop, sql: "SELECT 1", format: xlsx, outptu: x.tsv}
"""
    res = cli("validate", str(write_flow(flow_text(shop_db, steps))))
    assert res.exit_code == 2
    assert "outptu" in res.stderr and "xlsx" in res.stderr


def test_connector_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="exactly one of config.path"):
        SqliteConnector("db", {}, {})
    with pytest.raises(ConnectorError, match="unknown config key"):
        SqliteConnector("db", {"path": "x.db", "pasword": "x"}, {})
    conn = SqliteConnector("db", {"path": str(tmp_path / "missing.db")}, {"read_only": True})
    with pytest.raises(ConnectorError, match="cannot open SQLite database"):
        conn.query("SELECT 1")
    conn.close()


def test_stream_closes_early_and_frees_the_connection(tmp_path: Path, shop_db: Path) -> None:
    conn = SqliteConnector("db", {"path": str(shop_db)}, {})
    try:
        cols, rows = conn.stream("SELECT id FROM orders ORDER BY id", batch=2)
        assert cols == ["id"]
        assert next(rows) == (1,)
        rows.close()
        assert conn.query("SELECT count(*) FROM orders") == (["count(*)"], [(4,)])
        cols, rows = conn.stream("SELECT id FROM orders ORDER BY id", batch=3)
        assert [r[0] for r in rows] == [1, 2, 3, 4]
        assert conn.execute("UPDATE orders SET note = 'x' WHERE id = 1") == 1
    finally:
        conn.close()


CORE_DB_PLUGIN = '''
from aetherflow.core.api import Step, register_step


@register_step("core_db")
class CoreDb(Step):
    """aetherflow-core style: read / fetchall / fetchmany / connect on the db connector."""

    def run(self):
        db = self.ctx.connectors.db(self.inputs["resource"])
        cols, rows = db.read("SELECT id, name FROM orders WHERE id <= :n ORDER BY id", {"n": 2})
        cols2, rows2 = db.fetchall("SELECT count(*) AS c FROM orders")
        cols3, it, pytypes = db.fetchmany("SELECT id, name, amount, note FROM orders ORDER BY id", None,
                                          fetch_size=2, sample_size=3)
        streamed = [r[0] for r in it]
        conn = db.connect()
        with conn:
            conn.execute("INSERT INTO orders (id, name) VALUES (?, ?)", (99, "via connect"))
        conn.close()
        _, after = db.read("SELECT name FROM orders WHERE id = 99")
        return {"read": [cols, [list(r) for r in rows]], "fetchall": [cols2, [list(r) for r in rows2]],
                "fetchmany": [cols3, streamed, [t.__name__ for t in pytypes]], "connect": after[0][0]}
'''


@pytest.mark.parametrize("driver", ["sqlite3", "sqlalchemy"])
def test_core_connector_calls(af, write_flow, shop_db: Path, tmp_path: Path, driver: str) -> None:
    """read / fetchall / fetchmany / connect as aetherflow-core offered them; db:sqlalchemy with
    the connection pool options of aetherflow-core's demo profile (accepted, no effect)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "core_db.py").write_text(CORE_DB_PLUGIN, encoding="utf-8")
    config = f"{{url: 'sqlite:///{shop_db}'}}" if driver == "sqlalchemy" else None
    text = flow_text(shop_db, "      - {id: calls, type: core_db, inputs: {resource: shop}}\n", driver=driver, config=config)
    if driver == "sqlalchemy":
        text = text.replace("    config:", "    options: {pool_size: 10, max_overflow: 20, pool_pre_ping: true, pool_recycle: 1800}\n"
                                          "    config:")
    f = write_flow(text)
    res = af("run", f, "--plugin-path", plugins, "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(af("runs", "show", run_id, "--json").stdout)
    assert shown["jobs"][0]["steps"][0]["outputs"] == {
        "read": [["id", "name"], [[1, "alpha"], [2, "beta"]]],
        "fetchall": [["c"], [[4]]],
        "fetchmany": [["id", "name", "amount", "note"], [1, 2, 3, 4], ["int", "str", "float", "str"]],
        "connect": "via connect",
    }
