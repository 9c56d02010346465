"""Helpers shared by test modules (importable as ``support``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(pred: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``pred`` until true; fail the test naming ``what`` after ``timeout`` seconds.
    Used instead of bare sleeps to synchronise with other processes."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def show(runner: Callable[..., Any], run_id: str, history: bool = False) -> dict[str, Any]:
    """``aetherflow runs show RUN --json`` through the ``cli`` or ``af`` fixture."""
    res = runner("runs", "show", run_id, "--json", *(["--history"] if history else []))
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def job_doc(doc: dict[str, Any], job: str) -> dict[str, Any]:
    return next(j for j in doc["jobs"] if j["job_id"] == job)


def step_doc(doc: dict[str, Any], job: str, step: str) -> dict[str, Any]:
    return next(s for s in job_doc(doc, job)["steps"] if s["step_id"] == step)


def q(p: Path) -> str:
    """A path quoted for a shell command line in a flow."""
    return shlex.quote(str(p))


def traced(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m aetherflow ARGS``: the process and the modules it imported."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aetherflow", *args],
                          capture_output=True, text=True, env=e, timeout=120)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    return proc, names


def messages(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The stderr lines of a :func:`traced` process that are not import times."""
    return [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]


def cache_entries(home: Path) -> list[Path]:
    """The validation cache's files under an AETHERFLOW_HOME."""
    d = home / "cache" / "valid"
    return sorted(d.iterdir()) if d.is_dir() else []


# runs aetherflow.cli.main in a fresh interpreter, then reports its exit code and the modules it
# loaded (a real process: which modules one CLI process imports is the point)
_MAIN_PROBE = """
import json, sys
from aetherflow.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.write("\\n" + json.dumps({"exit": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def probe_main(*args: str) -> tuple[int, set[str], str, str]:
    """``aetherflow ARGS`` through ``aetherflow.cli.main`` in a fresh interpreter: its exit code,
    every module it imported, its stdout (without the probe's own line) and its stderr."""
    proc = subprocess.run([sys.executable, "-c", _MAIN_PROBE, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, _, doc = proc.stdout.rstrip("\n").rpartition("\n")
    info = json.loads(doc)
    return info["exit"], set(info["modules"]), out, proc.stderr


def example_installed() -> bool:
    """The example plugin package (plugins/aetherflow-example) is installed with its entry point."""
    from importlib import metadata

    try:
        dist = metadata.distribution("aetherflow-example")
    except metadata.PackageNotFoundError:
        return False
    return any(ep.group == "aetherflow.plugins" for ep in dist.entry_points)



def wait_sessions_gone(location: str, pid: int, timeout: float = 60.0) -> None:
    """After killing aetherflow process ``pid``: with a PostgreSQL store, wait until the server
    has ended that process's sessions (its advisory locks are then free, and its runs show
    CRASHED); with SQLite the kernel freed its locks when it died, nothing to wait for."""
    if "://" not in location:
        return
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(location)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "schema"])
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def gone() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                               (f"aetherflow/{pid}/%",)).fetchone()
        return row is not None and row[0] == 0

    wait_until(gone, timeout=timeout, what=f"the server to end the sessions of process {pid}")
