"""Overlapping runs under cron (`run --on-locked fail|skip|wait[=SECONDS]`, config `on_locked`)
and the run's own time limit (`flow.timeout_seconds`, `run --timeout`): real processes, the
flow lock or the business key held by a live run."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from support import alive, q, show, wait_until


@pytest.fixture
def holder(spawn, write_flow: Callable[..., Path], tmp_path: Path):
    """A flow with a flow lock and a business key, and a run of it that holds both until `go`."""
    started, go = tmp_path / "started", tmp_path / "go"
    flow = write_flow(f"""
        version: 1
        flow:
          id: nightly
          locks: {{scope: flow}}
          unique: {{key: batch}}
        jobs:
          - id: a
            steps:
              - id: hold
                type: external.process
                inputs: {{command: 'if [ ! -e {q(started)} ]; then touch {q(started)}; while [ ! -e {q(go)} ]; do sleep 0.05; done; fi', shell: true}}
        """)
    proc = spawn("run", flow, "--run-id", "first", "--key", "b1")
    wait_until(started.exists, what="the first run to hold the flow lock")
    yield flow, go, proc
    go.touch()


def runs(af) -> list[str]:
    return [r["run_id"] for r in json.loads(af("runs", "list", "--json").stdout)["runs"]]


def test_fail_is_the_default_and_exits_3(af, holder) -> None:
    flow, _, _ = holder
    res = af("run", flow)
    assert res.exit_code == 3
    assert "flow 'nightly' is locked by run first" in res.stderr
    assert runs(af) == ["first"]


def test_skip_exits_0_silently_and_records_nothing(af, holder, home: Path) -> None:
    flow, _, _ = holder
    res = af("run", flow, "--on-locked", "skip")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")
    verbose = af("run", flow, "--on-locked", "skip", "-v")
    assert verbose.exit_code == 0 and "skipped (--on-locked skip): flow 'nightly' is locked by run first" in verbose.stderr
    (home / "config.toml").write_text('on_locked = "skip"\n')
    assert af("run", flow).exit_code == 0  # from the config file
    assert af("run", flow, "--on-locked", "fail").exit_code == 3  # the flag wins
    assert runs(af) == ["first"]


def test_skip_on_a_held_business_key(af, holder, write_flow) -> None:
    _, _, _ = holder
    other = write_flow("""
        version: 1
        flow: {id: nightly, unique: {key: batch}}
        jobs:
          - id: a
            steps: [{id: s, type: noop}]
        """, name="keyed.yaml")
    assert af("run", other, "--key", "b1").exit_code == 3
    res = af("run", other, "--key", "b1", "--on-locked", "skip")
    assert (res.exit_code, res.stderr) == (0, "")
    assert af("run", other, "--key", "b2", "--on-locked", "skip").exit_code == 0  # another key runs
    assert len(runs(af)) == 2


def test_wait_with_seconds_gives_up(af, holder) -> None:
    flow, _, _ = holder
    res = af("run", flow, "--on-locked", "wait=0.5")
    assert res.exit_code == 3 and "locked by run first" in res.stderr
    assert runs(af) == ["first"]


@pytest.mark.parametrize("which", ["flow lock", "business key"])
def test_wait_waits_for_as_long_as_it_takes(af, spawn, holder, write_flow, tmp_path: Path, which: str) -> None:
    flow, go, first = holder
    if which == "business key":
        flow = write_flow("""
            version: 1
            flow: {id: keyed, unique: {key: batch, scope: global}}
            jobs:
              - id: a
                steps: [{id: s, type: noop}]
            """, name="keyed.yaml")
    log = tmp_path / "waiter.log"
    waiter = spawn("run", flow, "--on-locked", "wait", "--key", "b1", "--run-id", "second", "--log-file", log)
    wait_until(lambda: log.exists() and "waiting for" in log.read_text(), what="the second run to wait")
    assert waiter.poll() is None and runs(af) == ["first"]
    go.touch()
    assert first.wait(timeout=60) == 0
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert show(af, "second")["run"]["status"] == "SUCCESS"


def test_sigterm_stops_the_wait(af, spawn, holder, tmp_path: Path) -> None:
    flow, _, _ = holder
    log = tmp_path / "waiter.log"
    waiter = spawn("run", flow, "--on-locked", "wait", "--log-file", log)
    wait_until(lambda: log.exists() and "waiting for the flow lock of 'nightly'" in log.read_text(),
               what="the waiter to wait for the lock")
    waiter.send_signal(signal.SIGTERM)
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 143, err
    assert "while waiting for the flow lock of 'nightly'; no run was started" in err
    assert runs(af) == ["first"]


def test_a_bad_on_locked_value(af, write_flow) -> None:
    flow = write_flow("version: 1\nflow: {id: x}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    res = af("run", flow, "--on-locked", "later")
    assert res.exit_code == 2 and "use fail, skip, wait or wait=SECONDS" in res.stderr


# run timeout --------------------------------------------------------------------------------------


@pytest.fixture
def slow_flow(write_flow, tmp_path: Path) -> tuple[Path, Path, Path]:
    """First step counts its executions; the second sleeps while `slow` exists (writing its pid)."""
    count, slow, pids = tmp_path / "count", tmp_path / "slow", tmp_path / "pids"
    flow = write_flow(f"""
        version: 1
        flow: {{id: bounded, timeout_seconds: 3600}}
        jobs:
          - id: j
            steps:
              - {{id: first, type: external.process, inputs: {{command: 'echo x >> {q(count)}', shell: true}}}}
              - id: long
                type: external.process
                inputs: {{command: 'if [ -e {q(slow)} ]; then sleep 300 & echo $! > {q(pids)}; wait; fi', shell: true}}
        """)
    slow.touch()
    return flow, slow, pids


def test_the_run_times_out_stops_its_steps_and_resumes(af, slow_flow) -> None:
    flow, slow, pids = slow_flow
    text = flow.read_text().replace("timeout_seconds: 3600", "timeout_seconds: 1")
    flow.write_text(text)
    res = af("run", flow, "--run-id", "t1")
    assert res.exit_code == 124, res.stderr
    assert "run t1 TIMED_OUT" in res.stderr and "resume with: aetherflow resume t1" in res.stderr
    sleeper = int(pids.read_text())
    wait_until(lambda: not alive(sleeper), timeout=30, what="the step's process group to be killed")
    doc = show(af, "t1", history=True)
    assert doc["run"]["status"] == "TIMED_OUT"
    assert doc["jobs"][0]["status"] == "FAILED" and doc["jobs"][0]["reason"] == "the run timed out"
    assert [e["event"] for e in doc["history"]].count("run.timed_out") == 1
    listed = json.loads(af("runs", "list", "--status", "timed_out", "--json").stdout)["runs"]
    assert [r["run_id"] for r in listed] == ["t1"]
    slow.unlink()
    resumed = af("resume", "t1")
    assert resumed.exit_code == 0, resumed.stderr
    assert show(af, "t1")["run"]["status"] == "SUCCESS"
    assert flow.parent.joinpath("count").read_text() == "x\n"  # the first step did not run again


def test_run_timeout_overrides_the_flow(af, slow_flow) -> None:
    flow, _, _ = slow_flow
    res = af("run", flow, "--run-id", "t2", "--timeout", "1", "--json")
    assert res.exit_code == 124
    assert json.loads(res.stdout)["status"] == "TIMED_OUT"


def test_a_timeout_must_be_positive(af, slow_flow) -> None:
    flow, _, _ = slow_flow
    res = af("run", flow, "--timeout", "0")
    assert res.exit_code == 2 and "--timeout 0" in res.stderr
