"""db_load, the mirror of db_extract, for real on SQLite files and on PostgreSQL (its own
database per test, AETHERFLOW_TEST_PG_DSN; skipped with the reason when no server answers):
what db_extract wrote loads back unchanged, all rows in one transaction, a bad row loads nothing
and names its line, names are quoted (no SQL through a table or column name)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

ROWS = [
    (1, "ada", 12.5, None, "plain"),
    (2, "bob, jr", 7.0, 'says "hi"', "comma and quotes"),
    (3, "tab\there", 0.25, "line1\nline2", "tab and newline"),
    (4, "zoë ✓", -3.0, "", "unicode, empty string"),
    (5, None, None, None, "nulls"),
]


def _sqlite_source(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, note TEXT, why TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", ROWS)
    db.close()


def _table(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


ROUND_TRIP = """
version: 1
flow: {{id: roundtrip}}
resources:
  src: {{kind: db, driver: {driver}, config: {src}}}
  dst: {{kind: db, driver: {driver}, config: {dst}}}
jobs:
  - id: export
    steps:
      - id: out
        type: db_extract
        inputs: {{resource: src, sql: "SELECT * FROM orders ORDER BY id", format: {fmt}, output: orders.{fmt}}}
  - id: copy
    depends_on: [export]
    steps:
      - id: load
        type: db_load
        inputs: {{resource: dst, table: {table}, input: "{{{{ jobs.export.steps.out.outputs.path }}}}", {load}}}
      - id: back
        type: db_extract
        inputs: {{resource: dst, sql: "SELECT * FROM {table} ORDER BY id", format: {fmt}, output: again.{fmt}}}
"""


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_sqlite_round_trip_of_what_db_extract_wrote(write_flow, run_flow, tmp_path: Path, fmt: str) -> None:
    _sqlite_source(tmp_path / "src.db")
    flow = write_flow(ROUND_TRIP.format(driver="sqlite3", src=f"{{path: {tmp_path / 'src.db'}}}",
                                        dst=f"{{path: {tmp_path / 'dst.db'}}}", fmt=fmt, table="orders",
                                        load="create: true, batch_size: 2"))
    run = run_flow(flow)
    assert run.result.exit_code == 0, run.result.stderr
    out, load, back = run.step("export", "out"), run.step("copy", "load"), run.step("copy", "back")
    assert load["outputs"]["row_count"] == 5 and load["outputs"]["table"] == "orders"
    assert load["outputs"]["columns"] == ["id", "customer", "amount", "note", "why"]
    assert load["outputs"]["format"] == fmt and load["outputs"]["mode"] == "append"
    assert back["outputs"]["sha256"] == out["outputs"]["sha256"]  # byte for byte the same file
    assert Path(back["outputs"]["path"]).read_bytes() == Path(out["outputs"]["path"]).read_bytes()
    loaded = _table(tmp_path / "dst.db", "SELECT customer, note FROM orders ORDER BY id")
    # an empty field is NULL in tsv/csv (as db_extract writes NULL); jsonl keeps "" apart from null
    assert loaded[3] == ("zoë ✓", "" if fmt == "jsonl" else None)
    assert loaded[2] == ("tab\there", "line1\nline2")


def test_a_bad_row_loads_nothing_and_names_its_line(write_flow, run_flow, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    sqlite = sqlite3.connect(db)
    with sqlite:
        sqlite.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL NOT NULL)")
        sqlite.execute("INSERT INTO orders VALUES (100, 1.0)")
    sqlite.close()
    (tmp_path / "refused.csv").write_text("id,amount\n1,10\n2,20\n3,\n4,40\n", encoding="utf-8")
    (tmp_path / "ragged.tsv").write_text("id\tamount\n1\t10\n2\t20\n3\t30\n4\n", encoding="utf-8")
    for name, line, why in (("refused.csv", 4, "NOT NULL constraint failed"), ("ragged.tsv", 5, "1 field(s), the header has 2")):
        flow = write_flow(f"""
            version: 1
            flow: {{id: bad}}
            resources:
              shop: {{kind: db, driver: sqlite3, config: {{path: {db}}}}}
            jobs:
              - id: load
                steps:
                  - id: load
                    type: db_load
                    inputs: {{resource: shop, table: orders, input: {tmp_path / name}, mode: truncate, batch_size: 2}}
        """)
        run = run_flow(flow)
        assert run.result.exit_code == 1
        step = run.step("load", "load")
        assert step["status"] == "FAILED"
        assert f"line {line} of {name}: " in step["error"] and why in step["error"], step["error"]
        assert "nothing was loaded" in step["error"]
        # the truncate and the rows of the earlier batches were rolled back with it
        assert _table(db, "SELECT id, amount FROM orders") == [(100, 1.0)]


def test_columns_map_file_columns_and_a_headerless_file_names_them_by_position(write_flow, run_flow,
                                                                               tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    sqlite = sqlite3.connect(db)
    with sqlite:
        sqlite.execute("CREATE TABLE people (person_id INTEGER, full_name TEXT, city TEXT)")
    sqlite.close()
    (tmp_path / "with_header.csv").write_text("name,id,ignored\nada,1,x\nbob,2,y\n", encoding="utf-8")
    (tmp_path / "no_header.tsv").write_text("3\tcyd\tRome\n4\tdee\tOslo\n", encoding="utf-8")
    flow = write_flow(f"""
        version: 1
        flow: {{id: maps}}
        resources:
          shop: {{kind: db, driver: sqlite3, config: {{path: {db}}}}}
        jobs:
          - id: load
            steps:
              - id: named
                type: db_load
                inputs:
                  resource: shop
                  table: people
                  input: {tmp_path / 'with_header.csv'}
                  columns: {{id: person_id, name: full_name}}
              - id: positional
                type: db_load
                inputs:
                  resource: shop
                  table: people
                  input: {tmp_path / 'no_header.tsv'}
                  header: false
                  columns: {{"1": person_id, "3": city}}
    """)
    run = run_flow(flow)
    assert run.result.exit_code == 0, run.result.stderr
    assert run.step("load", "named")["outputs"]["columns"] == ["person_id", "full_name"]
    assert _table(db, "SELECT person_id, full_name, city FROM people ORDER BY person_id") == [
        (1, "ada", None), (2, "bob", None), (3, None, "Rome"), (4, None, "Oslo")]


def test_table_and_column_names_cannot_inject_sql(write_flow, run_flow, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    sqlite = sqlite3.connect(db)
    with sqlite:
        sqlite.execute("CREATE TABLE victims (id INTEGER)")
        sqlite.execute("INSERT INTO victims VALUES (1)")
    sqlite.close()
    evil_table = 'x"; DROP TABLE victims; --'
    (tmp_path / "evil.csv").write_text('"a""); DROP TABLE victims; --",b\n1,2\n', encoding="utf-8")
    flow = write_flow(f"""
        version: 1
        flow: {{id: evil}}
        resources:
          shop: {{kind: db, driver: sqlite3, config: {{path: {db}}}}}
        jobs:
          - id: load
            steps:
              - id: load
                type: db_load
                inputs: {{resource: shop, table: {json.dumps(evil_table)}, input: {tmp_path / 'evil.csv'}, create: true}}
    """)
    run = run_flow(flow)
    assert run.result.exit_code == 0, run.result.stderr
    assert _table(db, "SELECT id FROM victims") == [(1,)]
    assert _table(db, f'SELECT * FROM "{evil_table.replace(chr(34), chr(34) * 2)}"') == [("1", "2")]


def test_a_missing_input_file_fails_the_step_saying_where_it_looked(write_flow, run_flow, tmp_path: Path) -> None:
    flow = write_flow(f"""
        version: 1
        flow: {{id: missing}}
        resources:
          shop: {{kind: db, driver: sqlite3, config: {{path: {tmp_path / 'shop.db'}}}}}
        jobs:
          - id: load
            steps:
              - {{id: load, type: db_load, inputs: {{resource: shop, table: t, input: nothere.csv}}}}
    """)
    run = run_flow(flow)
    assert run.result.exit_code == 1
    error = run.step("load", "load")["error"]
    assert "input file " in error and "/artifacts/nothere.csv does not exist" in error


# ------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh database for the test (dropped at the end); its connection string."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"af_load_{secrets.token_hex(4)}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        yield dsn
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _pg(dsn: str, *statements: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows: list[tuple[object, ...]] = []
        for sql in statements:
            cur = conn.execute(sql)
            rows = cur.fetchall() if cur.description else []
        return rows


PG_SOURCE = """
CREATE TABLE orders (id int PRIMARY KEY, name text, amount numeric(10,2), created timestamptz, paid boolean,
                     meta jsonb, "odd ""name"" %" text);
INSERT INTO orders SELECT g, 'order ' || g, g * 1.5, timestamptz '2026-01-02 03:04:05+00' + g * interval '1 day',
       g % 2 = 0, jsonb_build_object('n', g, 's', 'a,b'), 'v' || g FROM generate_series(1, 7) g;
INSERT INTO orders (id, name) VALUES (8, E'tab\\there, "quoted"\\nnext line');
CREATE TABLE copy (LIKE orders INCLUDING ALL);
"""


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_postgres_round_trip_into_a_typed_table(write_flow, run_flow, pg_database: str, fmt: str) -> None:
    _pg(pg_database, *[s for s in PG_SOURCE.split(";\n") if s.strip()])
    config = json.dumps({"dsn": pg_database})
    flow = write_flow(ROUND_TRIP.format(driver="postgres", src=config, dst=config, fmt=fmt, table="copy",
                                        load="mode: truncate, batch_size: 3"))
    run = run_flow(flow)
    assert run.result.exit_code == 0, run.result.stderr
    out, load, back = run.step("export", "out"), run.step("copy", "load"), run.step("copy", "back")
    assert load["outputs"]["row_count"] == 8 and load["outputs"]["table"] == "copy"
    assert back["outputs"]["sha256"] == out["outputs"]["sha256"], Path(back["outputs"]["path"]).read_text()
    assert _pg(pg_database, "SELECT count(*) FROM (SELECT * FROM orders EXCEPT SELECT * FROM copy) d") == [(0,)]


@pytest.mark.postgres
def test_postgres_bad_row_rolls_everything_back_and_create_makes_the_table(write_flow, run_flow, pg_database: str,
                                                                           tmp_path: Path) -> None:
    _pg(pg_database, "CREATE TABLE facts (id int PRIMARY KEY, qty int)", "INSERT INTO facts VALUES (100, 1)")
    (tmp_path / "facts.csv").write_text("id,qty\n1,10\n2,20\n3,lots\n4,40\n", encoding="utf-8")
    (tmp_path / "new.jsonl").write_text('{"id": 1, "ok": true, "ratio": 0.5, "tags": ["a"]}\n'
                                        '{"id": 2, "ok": false, "ratio": 2, "tags": null}\n', encoding="utf-8")
    flow = write_flow(f"""
        version: 1
        flow: {{id: pgbad}}
        resources:
          wh: {{kind: db, driver: postgres, config: {json.dumps({"dsn": pg_database})}}}
        jobs:
          - id: bad
            steps:
              - id: load
                type: db_load
                inputs: {{resource: wh, table: public.facts, input: {tmp_path / 'facts.csv'}, mode: truncate, batch_size: 2}}
          - id: fresh
            steps:
              - id: load
                type: db_load
                inputs: {{resource: wh, table: "New Table", input: {tmp_path / 'new.jsonl'}, create: true}}
    """)
    run = run_flow(flow)
    assert run.result.exit_code == 1
    error = run.step("bad", "load")["error"]
    assert error.startswith("line 4 of facts.csv: ") and "lots" in error and "nothing was loaded" in error, error
    assert _pg(pg_database, "SELECT id, qty FROM facts") == [(100, 1)]
    assert run.step("fresh", "load")["status"] == "SUCCESS"
    assert _pg(pg_database, "SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = 'New Table' ORDER BY ordinal_position") == [
        ("id", "bigint"), ("ok", "boolean"), ("ratio", "double precision"), ("tags", "text")]
    assert _pg(pg_database, 'SELECT * FROM "New Table" ORDER BY id') == [(1, True, 0.5, '["a"]'), (2, False, 2.0, None)]
