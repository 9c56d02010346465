"""db:postgres against a real server (AETHERFLOW_TEST_PG_DSN; skipped with a reason otherwise).
Each test works in its own schema, dropped at the end."""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetherflow.connectors.postgres import PostgresConnector, scrub
from aetherflow.errors import ConnectorError

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    import psycopg

    name = f"af_test_{secrets.token_hex(4)}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"""CREATE TABLE {name}.orders (
            id int PRIMARY KEY, name text, amount numeric(10,2), created timestamptz, paid boolean,
            meta jsonb, blob bytea)""")
        conn.execute(
            f"INSERT INTO {name}.orders SELECT g, 'order ' || g, g * 1.5, "
            "timestamptz '2026-01-02 03:04:05+00' + g * interval '1 day', g % 2 = 0, "
            "jsonb_build_object('n', g), decode('00ff', 'hex') FROM generate_series(1, 25) g"
        )
        conn.execute(f"INSERT INTO {name}.orders (id, name) VALUES (26, E'tab\\there')")
    try:
        yield name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def _flow(dsn: str, schema: str, steps: str, driver: str = "postgres") -> str:
    return f"""
version: 1
flow:
  id: pgflow
  workspace: {{root: work}}
resources:
  wh:
    kind: db
    driver: {driver}
    config: {{dsn: "{dsn}"}}
    options: {{connect_timeout: 5}}
jobs:
  - id: load
    steps:
{steps.replace("SCHEMA", schema)}
"""


def test_query_and_extract(write_flow, run_flow, pg_dsn: str, schema: str) -> None:
    steps = """
      - id: total
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n, sum(amount) AS s FROM SCHEMA.orders WHERE id <= %s", params: [25]}
      - id: one
        type: db_query
        inputs: {resource: wh, sql: "SELECT * FROM SCHEMA.orders WHERE id = %(id)s", params: {id: 2}}
      - id: anyof
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n FROM SCHEMA.orders WHERE id = ANY(%s)", params: [[1, 2, 3]]}
      - id: jsonl
        type: db_extract
        inputs: {resource: wh, sql: "SELECT id, name, amount, paid FROM SCHEMA.orders ORDER BY id", format: jsonl, batch_size: 4}
      - id: tsv
        type: db_extract
        inputs: {resource: wh, sql: "SELECT id, name, amount FROM SCHEMA.orders WHERE id > 24 ORDER BY id", output: tail.tsv}
      - id: nothing
        type: db_extract
        inputs: {resource: wh, sql: "SELECT id FROM SCHEMA.orders WHERE id > 1000", skip_if_empty: true}
      - id: header_only
        type: db_extract
        inputs: {resource: wh, sql: "SELECT id FROM SCHEMA.orders WHERE id > 1000"}
"""
    run = run_flow(write_flow(_flow(pg_dsn, schema, steps)))
    assert run.result.exit_code == 0, run.result.stderr
    assert run.step("load", "total")["outputs"]["rows"] == [{"n": 25, "s": "487.50"}]  # numeric as exact text
    assert run.step("load", "anyof")["outputs"]["rows"] == [{"n": 3}]  # a list param is an array
    one = run.step("load", "one")["outputs"]["rows"][0]
    assert one == {"id": 2, "name": "order 2", "amount": "3.00", "created": "2026-01-04T03:04:05+00:00",
                   "paid": True, "meta": {"n": 2}, "blob": "AP8="}
    j = run.step("load", "jsonl")["outputs"]
    path = Path(j["path"])
    assert j["row_count"] == 26 and j["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    objs = [json.loads(x) for x in path.read_text().splitlines()]
    assert objs[0] == {"id": 1, "name": "order 1", "amount": "1.50", "paid": False}
    assert objs[-1] == {"id": 26, "name": "tab\there", "amount": None, "paid": None}
    t = run.step("load", "tsv")["outputs"]
    assert Path(t["path"]).read_text() == 'id\tname\tamount\n25\torder 25\t37.50\n26\t"tab\there"\t\n'
    assert run.step("load", "nothing")["status"] == "SKIPPED"
    header_only = run.step("load", "header_only")  # the default: as aetherflow-core
    assert header_only["status"] == "SUCCESS" and Path(header_only["outputs"]["output"]).read_text() == "id\n"


def test_sqlalchemy_url_alias(write_flow, run_flow, pg_dsn: str, schema: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(pg_dsn)
    user = urllib.parse.quote(str(p.get("user", "postgres")), safe="")
    if p.get("password"):
        user += ":" + urllib.parse.quote(str(p["password"]), safe="")
    url = f"postgresql+psycopg2://{user}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', 'postgres')}"
    steps = """
      - id: n
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n FROM SCHEMA.orders"}
"""
    text = _flow(pg_dsn, schema, steps, driver="sqlalchemy").replace(f'dsn: "{pg_dsn}"', f'url: "{url}"')
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 0, run.result.stderr
    assert run.step("load", "n")["outputs"]["rows"] == [{"n": 26}]


def test_stream_uses_a_server_side_cursor(pg_dsn: str, schema: str) -> None:
    conn = PostgresConnector("wh", {"dsn": pg_dsn}, {})
    try:
        cols, rows = conn.stream(f"SELECT id FROM {schema}.orders ORDER BY id", batch=5)
        assert cols == ["id"]
        assert next(rows) == (1,)
        # while streaming, the session holds a named cursor (the result is not in client memory)
        cursors = conn._conn.execute("SELECT name FROM pg_cursors").fetchall()
        assert any(c[0].startswith("aetherflow_") for c in cursors)
        assert [r[0] for r in rows] == list(range(2, 27))
        assert conn.query("SELECT count(*) FROM pg_cursors WHERE name LIKE 'aetherflow_%'") == (["count"], [(0,)])
        cols, rows = conn.stream(f"SELECT id FROM {schema}.orders", batch=5)
        rows.close()  # stopped early: the connector is free again
        assert conn.execute(f"UPDATE {schema}.orders SET paid = true WHERE id < 3") == 2
        with pytest.raises(ConnectorError, match="query failed: UndefinedTable"):
            conn.query(f"SELECT * FROM {schema}.nope")
        assert conn.query("SELECT 1 AS one") == (["one"], [(1,)])  # rolled back, usable again
        # without params the SQL is not scanned for placeholders: a literal % needs no escaping
        assert conn.query(f"SELECT count(*) AS n FROM {schema}.orders WHERE name LIKE 'order 1%'") == (["n"], [(11,)])
    finally:
        conn.close()


def test_bad_password_is_never_in_the_message(write_flow, run_flow, pg_dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(pg_dsn)
    host, port, db = p.get("host", "localhost"), p.get("port", "5432"), p.get("dbname", "postgres")
    password = "Wr0ng-Pa55-" + secrets.token_hex(4)
    role = f"af_norole_{secrets.token_hex(3)}"
    steps = """
      - id: q
        type: db_query
        inputs: {resource: wh, sql: "SELECT 1"}
"""
    # a literal password (not declared as a secret): the connector itself must keep it out
    dsn = f"postgresql://{role}:{password}@{host}:{port}/{db}"
    run = run_flow(write_flow(_flow(dsn, "public", steps)))
    assert run.result.exit_code == 1
    err = run.step("load", "q")["error"]
    assert "cannot connect to PostgreSQL" in err and role in err
    for text in (err, run.result.stdout, run.result.stderr):
        assert password not in text

    # a DSN the driver cannot parse quotes the offending text: still no password
    bad = PostgresConnector("wh", {"dsn": f"postgresql://{role}:{password} x@{host}/{db}"}, {})
    with pytest.raises(ConnectorError) as info:
        bad.query("SELECT 1")
    assert password not in str(info.value) and "not a valid PostgreSQL connection string" in str(info.value)
    assert info.value.__cause__ is not None  # the driver error is chained for debugging, not shown
    # password as a field, wrong role
    conn = PostgresConnector("wh", {"host": host, "port": port, "dbname": db, "user": role, "password": password}, {})
    with pytest.raises(ConnectorError) as info:
        conn.query("SELECT 1")
    assert password not in str(info.value) and role in str(info.value)


def test_tls_is_verified_by_default_for_remote_hosts() -> None:
    pytest.importorskip("psycopg")
    remote = PostgresConnector("wh", {"host": "db.example.com", "dbname": "x", "user": "u", "password": "p"}, {})._params()
    assert remote["sslmode"] == "verify-full"
    local = PostgresConnector("wh", {"dsn": "postgresql://u@127.0.0.1/x"}, {})._params()
    assert "sslmode" not in local
    opted = PostgresConnector("wh", {"dsn": "postgresql://u@db.example.com/x?sslmode=require"}, {})._params()
    assert opted["sslmode"] == "require"
    assert PostgresConnector("wh", {"host": "db.example.com", "sslmode": "disable"}, {})._params()["sslmode"] == "disable"


def test_scrub() -> None:
    assert scrub("x password=hunter2 y") == "x password=*** y"
    assert scrub("postgresql://bob:hunter2@h/db") == "postgresql://bob:***@h/db"
    assert "s3cr3t" not in scrub("failed near 's3cr3t x'", "s3cr3t")
    with pytest.raises(ConnectorError, match="unknown config key"):
        PostgresConnector("wh", {"dsn": "postgresql://h/db", "pasword": "x"}, {})


def test_sqlalchemy_named_binds(cli, write_flow, run_flow, pg_dsn: str, schema: str) -> None:
    """A db:sqlalchemy resource with a postgresql:// url takes SQLAlchemy text() SQL: :name binds,
    with ::casts, colons and % inside literals, and dollar quotes left alone."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(pg_dsn)
    user = urllib.parse.quote(str(p.get("user", "postgres")), safe="")
    if p.get("password"):
        user += ":" + urllib.parse.quote(str(p["password"]), safe="")
    url = f"postgresql://{user}@{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', 'postgres')}"
    steps = """
      - id: one
        type: db_query
        inputs:
          resource: wh
          sql: "SELECT id, name, :tag::text AS tag, '10:30' AS t, 'a%' AS pct, $$:not_a_bind$$ AS d
                FROM SCHEMA.orders WHERE id = :id -- a comment: with :colons and 50%"
          params: {id: 2, tag: x}
      - id: like
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n FROM SCHEMA.orders WHERE name LIKE 'order 1%' AND id <= :max",
                 params: {max: 25}}
      - id: repeated
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n FROM SCHEMA.orders WHERE id >= :lo AND id < :lo + 5",
                 params: {lo: 3}}
      - id: extract
        type: db_extract
        inputs: {resource: wh, format: jsonl, params: {a: 3, b: 5},
                 sql: "SELECT id, amount::text AS amount FROM SCHEMA.orders WHERE id BETWEEN :a AND :b ORDER BY id"}
      - id: psycopg_style
        type: db_query
        inputs: {resource: wh, sql: "SELECT count(*) AS n FROM SCHEMA.orders WHERE id < %(n)s", params: {n: 4}}
  - id: missing
    steps:
      - id: q
        type: db_query
        inputs: {resource: wh, sql: "SELECT :nope AS x", params: {other: 1}}
"""
    text = _flow(pg_dsn, schema, steps, driver="sqlalchemy").replace(f'dsn: "{pg_dsn}"', f'url: "{url}"')
    flow = write_flow(text)
    res = cli("validate", str(flow))
    assert res.exit_code == 0, res.stderr
    run = run_flow(flow)
    assert run.result.exit_code == 1  # only the `missing` job fails
    assert run.step("load", "one")["outputs"]["rows"] == [
        {"id": 2, "name": "order 2", "tag": "x", "t": "10:30", "pct": "a%", "d": ":not_a_bind"}]
    assert run.step("load", "like")["outputs"]["rows"] == [{"n": 11}]  # order 1, order 10..19
    assert run.step("load", "repeated")["outputs"]["rows"] == [{"n": 5}]
    path = Path(run.step("load", "extract")["outputs"]["path"])
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"id": 3, "amount": "4.50"}, {"id": 4, "amount": "6.00"}, {"id": 5, "amount": "7.50"}]
    assert run.step("load", "psycopg_style")["outputs"]["rows"] == [{"n": 3}]
    assert "the SQL uses :nope but params has no such key" in run.step("missing", "q")["error"]
