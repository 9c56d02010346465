"""The PostgreSQL store from the command line (SPEC section 12): selection by URL, what a bad URL,
an unreachable server, wrong credentials, a missing privilege or a newer schema do (a clear
error, the SPEC exit code, no traceback, and never the password anywhere), and
``aetherflow store copy`` between SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from support import job_doc, show, step_doc

from tests.conftest import with_query

pytestmark = pytest.mark.postgres

PASSWORD = "s3cr3t-Pa55"  # trust authentication accepts any password: it must never show

FLOW = """
version: 1
flow: {id: pgflow}
jobs:
  - id: j
    steps:
      - {id: s, type: noop}
"""

WAITING = """
version: 1
flow: {id: waiter, unique: {key: order, scope: flow}}
jobs:
  - id: j
    steps:
      - {id: first, type: noop, outputs: {n: 1}}
      - {id: w, type: wait_for_event, inputs: {events: [go]}}
      - {id: bad, type: external.process, inputs: {command: [sh, -c, "exit 3"]}}
"""


def with_password(url: str, user: str | None = None, password: str = PASSWORD) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    name = user or (parts.username or "postgres")
    return urlunsplit((parts.scheme, f"{name}:{password}@{host}", parts.path, parts.query, ""))


def no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text
        assert "Traceback" not in text, text


@pytest.fixture
def url(pg_store_url: Callable[[], str]) -> str:
    return pg_store_url()


@pytest.fixture
def role(pg_dsn: str) -> Iterator[str]:
    """A login role without CREATE on the test database (a new role has none)."""
    name = f"af_role_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(f'DROP OWNED BY "{name}" CASCADE')
        conn.execute(f'DROP ROLE "{name}"')


def test_a_url_selects_postgresql_and_the_password_is_never_shown_or_recorded(cli, write_flow, url: str, home: Path):
    secret_url = with_password(url)
    flow = write_flow(FLOW)
    res = cli("run", flow, "--state", secret_url, "--run-id", "pg-1", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["store"] == url and doc["status"] == "SUCCESS"
    texts = [res.stdout, res.stderr]
    for args in (["runs", "list", "--json"], ["runs", "list"], ["runs", "show", "pg-1", "--json"], ["locks", "list", "--json"],
                 ["doctor", str(flow)], ["doctor", str(flow), "--json"], ["run", str(flow), "--dry-run", "--json"]):
        res = cli(*args, env={"AETHERFLOW_STATE": secret_url})
        assert res.exit_code == 0, (args, res.stderr)
        texts += [res.stdout, res.stderr]
    no_secret(*texts)
    listed = json.loads(cli("runs", "list", "--json", "--state", secret_url).stdout)["runs"]
    assert [(r["run_id"], r["store"]) for r in listed] == [("pg-1", url)]
    doctor = json.loads(cli("doctor", str(flow), "--json", env={"AETHERFLOW_STATE": secret_url}).stdout)["checks"]
    assert {c["check"]: c["ok"] for c in doctor}["state store"] is True
    # the store is remembered without its password; a command that finds the run there gets
    # the password from libpq's own sources (trust authentication here needs none)
    assert (home / "stores").read_text() == url + "\n"
    assert cli("runs", "show", "pg-1").exit_code == 0
    res = cli("runs", "show", "nope", "--state", secret_url)
    assert res.exit_code == 2
    no_secret(res.stdout, res.stderr)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_flow_state_path_may_name_the_store(cli, write_flow, url: str, scheme: str):
    flow = write_flow(FLOW.replace("flow: {id: pgflow}",
                                   "flow:\n  id: pgflow\n  state: {backend: postgres, path: '{{ env.STORE_URL }}'}"))
    store_url = scheme + url.removeprefix("postgresql")
    res = cli("run", flow, "--run-id", "by-path", "--json", env={"STORE_URL": store_url})
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["store"] == store_url
    assert cli("runs", "show", "by-path").exit_code == 0  # found through the stores this machine used


def test_backend_postgres_without_a_url_is_a_resolution_error(cli, write_flow):
    flow = write_flow(FLOW.replace("flow: {id: pgflow}", "flow:\n  id: pgflow\n  state: {backend: postgres, path: s.db}"))
    res = cli("run", flow)
    assert res.exit_code == 2
    assert "state.backend_path" in res.stderr and "flow.state.path" in res.stderr


def bad_urls(dsn: str) -> list[tuple[str, str, int, str]]:
    """(name, URL, exit code, text the message must contain)"""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    port1 = urlunsplit((parts.scheme, f"postgres:{PASSWORD}@127.0.0.1:1", parts.path, "", ""))
    nobody = urlunsplit((parts.scheme, f"af_nobody_{uuid.uuid4().hex[:6]}:{PASSWORD}@{host}", parts.path, "", ""))
    return [
        ("unreachable", port1, 1, "cannot connect to the state store postgresql://postgres@127.0.0.1:1"),
        ("wrong credentials", nobody, 1, "does not exist"),
        ("bad schema name", with_query(with_password(dsn), schema="no-dashes"), 2, "is not a plain identifier"),
        ("unknown parameter", with_query(with_password(dsn), colour="blue"), 2, "invalid state store URL"),
        ("unknown scheme", f"mysql://root:{PASSWORD}@127.0.0.1/test", 2, "scheme 'mysql://' is not supported"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_store_urls_are_clear_errors_without_the_password(cli, af, write_flow, pg_dsn: str, case: int):
    name, bad, code, text = bad_urls(pg_dsn)[case]
    flow = write_flow(FLOW)
    for args in (["run", str(flow)], ["runs", "list"], ["runs", "list", "--json"], ["resume", "some-run"],
                 ["cancel", "some-run"], ["locks", "list"], ["resume", "--due"]):
        res = cli(*args, "--state", bad)
        assert res.exit_code == code, (name, args, res.stderr)
        assert text in res.stderr, (name, args, res.stderr)
        no_secret(res.stdout, res.stderr)
    res = af("run", flow, "--json", env={"AETHERFLOW_STATE": bad})  # a real process: the same
    assert res.exit_code == code and text in res.stderr, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["error"]["exit_code"] == code
    no_secret(res.stdout, res.stderr)
    res = cli("doctor", str(flow), "--json", env={"AETHERFLOW_STATE": bad})
    assert res.exit_code == 2
    checks = {c["check"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["state store"]["ok"] is False and text in checks["state store"]["detail"]
    no_secret(res.stdout, res.stderr)


def test_a_user_who_may_not_create_the_schema_is_told_what_to_ask_for(cli, write_flow, pg_dsn: str, role: str):
    schema = f"aft_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(pg_dsn)
    host = parts.netloc.rpartition("@")[2]
    url = with_query(urlunsplit((parts.scheme, f"{role}:{PASSWORD}@{host}", parts.path, parts.query, "")), schema=schema)
    flow = write_flow(FLOW)
    res = cli("run", flow, "--state", url)
    assert res.exit_code == 1, res.stderr
    assert "error[state.permission]" in res.stderr and "permission denied" in res.stderr
    assert f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"' in res.stderr
    no_secret(res.stdout, res.stderr)
    res = cli("doctor", str(flow), "--state", url)
    assert res.exit_code == 2 and "may not create schema" in res.stdout
    no_secret(res.stdout, res.stderr)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what the hint says the owner does
        conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    try:
        res = cli("run", flow, "--state", url, "--json")
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["status"] == "SUCCESS"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_store_migrated_by_a_newer_aetherflow_is_refused(cli, write_flow, url: str):
    flow = write_flow(FLOW)
    assert cli("run", flow, "--state", url).exit_code == 0  # creates the schema
    schema = url.rpartition("schema=")[2]
    with psycopg.connect(url.rpartition("?")[0], autocommit=True) as conn:
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '99' WHERE key = 'schema_version'")
    for args in (["run", str(flow)], ["runs", "list"]):
        res = cli(*args, "--state", url)
        assert res.exit_code == 1, res.stderr
        assert "error[state.too_new]" in res.stderr
        assert "schema version 99, newer than this aetherflow understands (1)" in res.stderr
        assert "Traceback" not in res.stderr


def test_hosts_starting_together_create_the_schema_once(url: str, home: Path):
    procs = [subprocess.Popen([sys.executable, "-m", "aetherflow", "runs", "list", "--json", "--state", url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    assert all(json.loads(o)["runs"] == [] for o, _ in outs)


def test_without_psycopg_a_url_says_what_to_install(home: Path, url: str):
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from aetherflow.cli import main\n"
            "main(sys.argv[1:])\n")
    done = subprocess.run([sys.executable, "-c", code, "runs", "list", "--state", with_password(url)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 2, done.stderr
    assert "error[usage.store_driver]" in done.stderr and "pip install 'aetherflow[postgres]'" in done.stderr
    no_secret(done.stdout, done.stderr)


# ---------------------------------------------------------------------------------------------
# store copy


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A `runs show --json --history` document without what names the store it came from."""
    doc = json.loads(json.dumps(doc))
    doc["run"].pop("store")
    return doc


def test_store_copy_moves_every_run_to_postgresql_and_back(cli, write_flow, tmp_path: Path, url: str, home: Path):
    sqlite_a, sqlite_b = tmp_path / "a" / "state.db", tmp_path / "b" / "state.db"
    flow, waiter = write_flow(FLOW), write_flow(WAITING, "waiter.yaml")
    for rid in ("ok-1", "ok-2"):
        assert cli("run", flow, "--run-id", rid, "--state", sqlite_a).exit_code == 0
    assert cli("run", waiter, "--run-id", "wait-1", "--key", "7", "--state", sqlite_a).exit_code == 0
    assert cli("run", waiter, "--run-id", "wait-2", "--key", "8", "--state", sqlite_a).exit_code == 0
    assert cli("resume", "wait-2", "--event", "go", "--data", '{"by": "ops"}', "--state", sqlite_a).exit_code == 1
    before = {rid: comparable(show(lambda *a: cli(*a, "--state", sqlite_a), rid, history=True))
              for rid in ("ok-1", "ok-2", "wait-1", "wait-2")}

    res = cli("store", "copy", str(sqlite_a), url, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {"schema_version": 1, "copied": ["ok-1", "ok-2", "wait-1", "wait-2"],
                                      "from": str(sqlite_a), "to": url}
    for rid, doc in before.items():
        assert comparable(show(lambda *a: cli(*a, "--state", url), rid, history=True)) == doc, rid
    listed = json.loads(cli("runs", "list", "--json", "--state", url).stdout)["runs"]
    assert [(r["run_id"], r["status"], r["business_key"]) for r in listed] == [
        ("wait-2", "FAILED", "order::8"), ("wait-1", "WAITING", "order::7"), ("ok-2", "SUCCESS", None),
        ("ok-1", "SUCCESS", None)]

    res = cli("store", "copy", str(sqlite_a), url)  # again: every id exists in DST
    assert res.exit_code == 2
    assert "4 run id(s)" in res.stderr and "ok-1, ok-2, wait-1, wait-2" in res.stderr and "nothing was copied" in res.stderr

    # the copied waiting run continues in PostgreSQL (its business key held there too)
    assert cli("run", waiter, "--key", "7", "--state", url).exit_code == 3
    res = cli("resume", "wait-1", "--event", "go", "--state", url)
    assert res.exit_code == 1, res.stderr  # the step after the wait fails, as in the source
    doc = show(lambda *a: cli(*a, "--state", url), "wait-1")
    assert step_doc(doc, "j", "w")["outcome"] == "go" and job_doc(doc, "j")["status"] == "FAILED"

    res = cli("store", "copy", url, str(sqlite_b))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"copied 4 run(s) from {url} to {sqlite_b}"
    back = comparable(show(lambda *a: cli(*a, "--state", sqlite_b), "wait-1", history=True))
    assert back == comparable(show(lambda *a: cli(*a, "--state", url), "wait-1", history=True))
    assert str(sqlite_b) in (home / "stores").read_text()  # DST is a store this machine knows


def test_store_copy_refuses_a_run_being_executed(cli, spawn, write_flow, tmp_path: Path, url: str):
    gate = tmp_path / "gate"
    flow = write_flow(f"""
version: 1
flow: {{id: busy}}
jobs:
  - id: j
    steps:
      - {{id: s, type: external.process, inputs: {{command: [sh, -c, "touch {tmp_path}/started; while [ ! -f {gate} ]; do sleep 0.05; done"]}}}}
""")
    src = tmp_path / "src.db"
    proc = spawn("run", flow, "--run-id", "live-1", "--state", src)
    from support import wait_until

    wait_until((tmp_path / "started").exists, what="the run to start")
    try:
        res = cli("store", "copy", str(src), url)
        assert res.exit_code == 3, res.stderr
        assert "live-1" in res.stderr and "being executed" in res.stderr
        assert json.loads(cli("runs", "list", "--json", "--state", url).stdout)["runs"] == []
    finally:
        gate.touch()
    assert proc.wait(timeout=120) == 0
    res = cli("store", "copy", str(src), url)
    assert res.exit_code == 0, res.stderr


def test_store_copy_usage_errors(cli, tmp_path: Path, url: str):
    res = cli("store", "copy", str(tmp_path / "missing.db"), url)
    assert res.exit_code == 2 and "no store at" in res.stderr
    res = cli("store", "copy", url, with_password(url))
    assert res.exit_code == 2 and "the same store" in res.stderr
    no_secret(res.stdout, res.stderr)
