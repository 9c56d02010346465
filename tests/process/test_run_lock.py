"""One executor per run, and SIGTERM / SIGINT, with real ``python -m aetherflow`` subprocesses
(SPEC sections 1 and 5).

A step that must stay busy writes its pids to a file and then waits for a release file the test
creates (or is stopped by the signal); the test polls for files and pids with deadlines and never
sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import alive, show, wait_until

# the same tests with the store selected by a PostgreSQL URL (tests/conftest.py)
pytestmark = pytest.mark.store_backends

TICK = """{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"']}"""
# records its execution, then on the first attempt starts a grandchild `sleep`, writes
# "SHELL_PID SLEEP_PID" to $PID_FILE and waits until $RELEASE exists (or the group is killed)
BUSY = ("""{command: [sh, -c, 'echo "$AETHERFLOW_JOB_ID.$AETHERFLOW_STEP_ID $AETHERFLOW_ATTEMPT" >> "$COUNT_FILE"; """
        """if [ "$AETHERFLOW_ATTEMPT" = 1 ]; then sleep 300 & echo "$$ $!" > "$PID_FILE.tmp"; mv "$PID_FILE.tmp" "$PID_FILE"; """
        """while [ ! -f "$RELEASE" ]; do sleep 0.05; done; kill $! 2>/dev/null; fi']}""")

FLOW = """
version: 1
flow: {id: locked}
jobs:
  - id: a
    steps:
      - {id: s1, type: external.process, inputs: @tick}
      - {id: busy, type: external.process, inputs: @busy}
      - {id: s3, type: external.process, inputs: @tick}
  - id: b
    depends_on: [a]
    steps:
      - {id: s1, type: external.process, inputs: @tick}
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    f = {"count": tmp_path / "count.log", "pid": tmp_path / "pids", "release": tmp_path / "release"}
    monkeypatch.setenv("COUNT_FILE", str(f["count"]))
    monkeypatch.setenv("PID_FILE", str(f["pid"]))
    monkeypatch.setenv("RELEASE", str(f["release"]))
    return f


@pytest.fixture
def flow_file(write_flow: Callable[..., Path], files: dict[str, Path]) -> Path:
    return write_flow(FLOW.replace("@tick", TICK).replace("@busy", BUSY))


def counts(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines())


class Runner:
    """A background ``python -m aetherflow`` with its output in files."""

    def __init__(self, args: list[str], out: Path) -> None:
        self.out = out
        self.err = out.with_suffix(".err")
        with open(out, "wb") as so, open(self.err, "wb") as se:
            self.proc = subprocess.Popen([sys.executable, "-m", "aetherflow", *args], stdout=so, stderr=se,
                                         env=dict(os.environ))

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background(tmp_path: Path, home: Path):  # type: ignore[no-untyped-def]
    started: list[Runner] = []

    def start(*args: Any) -> Runner:
        r = Runner([str(a) for a in args], tmp_path / f"bg{len(started)}.out")
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def pids_of(files: dict[str, Path]) -> tuple[int, int]:
    wait_until(files["pid"].exists, what="the busy step to start")
    shell, sleeper = (int(x) for x in files["pid"].read_text().split())
    return shell, sleeper


def test_second_executor_of_a_live_run_exits_3_naming_pid_and_host(af, background, flow_file, files):
    rid = "held-run"
    first = background("run", flow_file, "--run-id", rid)
    shell, _ = pids_of(files)
    assert alive(shell)

    res = af("resume", rid)
    assert res.exit_code == 3, res.stderr
    assert f"pid {first.proc.pid}" in res.stderr
    assert socket.gethostname() in res.stderr
    assert "Traceback" not in res.stderr
    res = af("run", flow_file, "--run-id", rid)
    assert res.exit_code == 3, res.stderr
    assert str(first.proc.pid) in res.stderr

    res = af("runs", "list", "--json")
    assert {r["run_id"]: r["status"] for r in json.loads(res.stdout)["runs"]} == {rid: "RUNNING"}  # alive: not CRASHED
    assert counts(files["count"]) == {"a.s1": 1, "a.busy": 1}  # the refused commands ran nothing

    files["release"].touch()
    assert first.wait() == 0, first.stderr
    assert counts(files["count"]) == {"a.s1": 1, "a.busy": 1, "a.s3": 1, "b.s1": 1}
    res = af("resume", rid)
    assert res.exit_code == 0, res.stderr
    assert "already succeeded" in res.stderr
    assert counts(files["count"]) == {"a.s1": 1, "a.busy": 1, "a.s3": 1, "b.s1": 1}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_interrupts_kills_the_process_group_and_resume_finishes(af, background, flow_file, files, sig, code):
    rid = f"sig-{code}"
    runner = background("run", flow_file, "--run-id", rid)
    shell, sleeper = pids_of(files)
    assert os.getpgid(shell) == shell  # the command runs in its own process group
    assert os.getpgid(sleeper) == shell
    assert os.getpgid(shell) != os.getpgid(runner.proc.pid)

    runner.proc.send_signal(sig)
    assert runner.wait() == code, runner.stderr
    assert "Traceback" not in runner.stderr
    wait_until(lambda: not alive(shell) and not alive(sleeper), timeout=30, what="the step's process group to die")
    assert not files["release"].exists()

    doc = show(af, rid)
    assert doc["run"]["status"] == "INTERRUPTED"
    assert doc["run"]["stored_status"] == "INTERRUPTED"
    steps = {f"{j['job_id']}.{s['step_id']}": s for j in doc["jobs"] for s in j["steps"]}
    assert steps["a.s1"]["status"] == "SUCCESS"
    name = sig.name  # "SIGTERM" / "SIGINT"
    # the interrupted attempt is recorded as ended, not left RUNNING
    assert (steps["a.busy"]["status"], steps["a.busy"]["error"]) == ("FAILED", f"interrupted ({name})")
    assert [(a["attempt"], a["status"]) for a in steps["a.busy"]["attempts"]] == [(1, "FAILED")]
    assert f"a.busy: interrupted ({name})" in runner.stderr
    assert f"aetherflow resume {rid}" in runner.stderr
    assert counts(files["count"]) == {"a.s1": 1, "a.busy": 1}
    res = af("locks", "list", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["locks"] == []

    res = af("resume", rid)
    assert res.exit_code == 0, res.stderr
    assert counts(files["count"]) == {"a.s1": 1, "a.busy": 2, "a.s3": 1, "b.s1": 1}
    doc = show(af, rid)
    assert doc["run"]["status"] == "SUCCESS"
    steps = {f"{j['job_id']}.{s['step_id']}": s for j in doc["jobs"] for s in j["steps"]}
    assert steps["a.busy"]["attempt"] == 2 and steps["a.s1"]["attempt"] == 1
    assert [(a["attempt"], a["status"]) for a in steps["a.busy"]["attempts"]] == [(1, "FAILED"), (2, "SUCCESS")]


PARALLEL = """
version: 1
flow: {id: par, max_parallel_jobs: 2}
jobs:
  - id: a
    steps: [{id: busy, type: external.process, inputs: @busy}]
  - id: b
    steps: [{id: busy, type: external.process, inputs: @busy}]
  - id: c
    depends_on: [a, b]
    steps: [{id: s, type: external.process, inputs: @tick}]
"""


def test_sigterm_stops_every_running_job_of_a_parallel_run(af, background, write_flow, files, tmp_path):
    busy = BUSY.replace('"$PID_FILE', '"$PID_FILE.$AETHERFLOW_JOB_ID')
    f = write_flow(PARALLEL.replace("@tick", TICK).replace("@busy", busy))
    runner = background("run", f, "--run-id", "par-1")
    pids = []
    for job in ("a", "b"):
        pid_file = Path(f"{files['pid']}.{job}")
        wait_until(pid_file.exists, what=f"job {job} to start its command")
        pids.extend(int(x) for x in pid_file.read_text().split())
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.wait() == 143, runner.stderr
    wait_until(lambda: not any(alive(p) for p in pids), timeout=30, what="both process groups to die")
    doc = show(af, "par-1")
    assert doc["run"]["status"] == "INTERRUPTED"
    steps = {f"{j['job_id']}.{s['step_id']}": s for j in doc["jobs"] for s in j["steps"]}
    assert steps["a.busy"]["status"] == steps["b.busy"]["status"] == "FAILED"
    assert steps["c.s"]["status"] == "PENDING"
    assert counts(files["count"]) == {"a.busy": 1, "b.busy": 1}

    res = af("resume", "par-1")
    assert res.exit_code == 0, res.stderr
    assert counts(files["count"]) == {"a.busy": 2, "b.busy": 2, "c.s": 1}
    assert show(af, "par-1")["run"]["status"] == "SUCCESS"
