"""Shared fixtures: an isolated AETHERFLOW_HOME, flow writers, an in-process CLI runner and a
real-subprocess runner. No test touches the real home directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


#: the store backends a test marked ``store_backends`` runs against (the same test, the store
#: selected as a user would: SQLite by default, PostgreSQL by a URL in AETHERFLOW_STATE)
STORE_BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("store_backends"):
        metafunc.parametrize("store_backend", STORE_BACKENDS, indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """The test's store backend: ``sqlite`` unless the test is marked ``store_backends``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_backend: str, request: pytest.FixtureRequest) -> Path:
    """A private AETHERFLOW_HOME (state, stores, workspaces) for the test. With the postgres
    backend, AETHERFLOW_STATE names a fresh PostgreSQL store (a schema of its own)."""
    h = tmp_path / "afhome"
    monkeypatch.setenv("AETHERFLOW_HOME", str(h))
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    for var in ("AETHERFLOW_STATE", "AETHERFLOW_PLUGIN_PATHS", "AETHERFLOW_PROFILES_FILE", "AETHERFLOW_EVENTS_LOG",
                "AETHERFLOW_TEST_CRASH_AT", "NO_COLOR", "XDG_STATE_HOME", "AETHERFLOW_CONFIG", "XDG_CONFIG_HOME",
                "STATE_DIRECTORY", "AETHERFLOW_LOG_FORMAT", "AETHERFLOW_ON_LOCKED", "AETHERFLOW_METRICS_TEXTFILE",
                "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    if store_backend == "postgres":
        monkeypatch.setenv("AETHERFLOW_STATE", request.getfixturevalue("pg_store_url")())
    return h


@pytest.fixture
def store_location(home: Path) -> str:
    """Where the test's runs are recorded by default: AETHERFLOW_STATE, else the home's state.db."""
    return os.environ.get("AETHERFLOW_STATE") or str(home / "state.db")


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "flow.yaml") -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return p

    return write


@pytest.fixture
def cli(home: Path) -> Callable[..., Result]:
    """Run the CLI in-process (typer CliRunner); stdout and stderr kept apart."""
    from typer.testing import CliRunner

    from aetherflow.cli.app import app

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        runner = CliRunner()
        res = runner.invoke(app, [str(a) for a in args], env=env, input=input, catch_exceptions=False)
        return Result(res.exit_code, res.stdout, res.stderr)

    return run


@pytest.fixture
def af(home: Path) -> Callable[..., Result]:
    """Run `python -m aetherflow` as a real subprocess with the test's environment."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None) -> Result:
        e = dict(os.environ)
        e.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "aetherflow", *[str(a) for a in args]],
            capture_output=True, text=True, env=e, timeout=timeout, cwd=cwd,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def spawn(home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `python -m aetherflow ...` in the background; every process is reaped at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen([sys.executable, "-m", "aetherflow", *[str(a) for a in args]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or the timeout; used instead of bare sleeps."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def store_of(store_location: str) -> Callable[[Path | None], object]:
    """``store_of()``: a client of the test's store (``store_of(path)``: of that SQLite file)."""
    from aetherflow.state.backends import open_store

    opened: list[Any] = []

    def open_(path: Path | None = None) -> Any:
        s = open_store(str(path) if path is not None else store_location)
        opened.append(s)
        return s

    yield open_  # type: ignore[misc]
    for s in opened:
        s.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def pg_test_dsn() -> str:
    """The test server's DSN, or a skip saying why there is none (a laptop without a server
    still passes, visibly)."""
    dsn = os.environ.get("AETHERFLOW_TEST_PG_DSN")
    if not dsn:
        pytest.skip("PostgreSQL tests need AETHERFLOW_TEST_PG_DSN (set by .ci/run)")
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at AETHERFLOW_TEST_PG_DSN is not reachable: {exc}")
    return dsn


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    yield pg_test_dsn()


def with_query(url: str, **params: str) -> str:
    """``url`` with more query parameters."""
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)


@pytest.fixture
def pg_store_url() -> Iterator[Callable[[], str]]:
    """``pg_store_url()``: the URL of a fresh PostgreSQL state store (its own schema in the test
    database, dropped at teardown). Skips with the reason when no server answers."""
    import uuid

    import psycopg

    dsn = pg_test_dsn()
    schemas: list[str] = []

    def new() -> str:
        schema = f"aft_{uuid.uuid4().hex[:16]}"
        schemas.append(schema)
        return with_query(dsn, schema=schema)

    yield new
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '30s'")
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
