"""``external.process`` is called in the job's own thread, without the hand-off to the step
worker thread (engine/calls.py ``_in_job_thread``): its supervision loop watches the cancel token
and the step's deadline itself. These tests pin what that must not change: the step-level
``timeout_seconds`` (and "the smaller wins" with the input of the same name) kills the whole
process tree and fails the step, and a SIGTERM stops a command running inside ``with_lock``,
records INTERRUPTED and releases the lock; and what it changes: a SIGTERM now waits out a long
``kill_grace_seconds`` before the runner exits. Real ``python -m aetherflow`` processes throughout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import alive, show, step_doc, wait_until

# starts a grandchild `sleep`, writes "SHELL_PID SLEEP_PID" to $PID_FILE, then waits for it
SLEEPER = """[sh, -c, 'sleep 60 & echo "$$ $!" > "$PID_FILE.tmp"; mv "$PID_FILE.tmp" "$PID_FILE"; wait']"""


def _stop(runner: subprocess.Popen[str]) -> str:
    """SIGTERM a background runner (the ``spawn`` fixture's), expect exit 143; its stderr."""
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 143, err
    return err


def _pids(path: Path) -> tuple[int, int]:
    wait_until(path.exists, what="the command to write its pids")
    shell, sleeper = (int(x) for x in path.read_text().split())
    return shell, sleeper


@pytest.mark.parametrize(
    ("step_timeout", "input_timeout"),
    [(1, None), (1, 60), (60, 1)],
    ids=["step", "step-smaller", "input-smaller"],
)
def test_step_timeout_kills_the_command_tree_and_fails_the_step(
    af, write_flow: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    step_timeout: int, input_timeout: int | None,
) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("PID_FILE", str(pid_file))
    extra = f", timeout_seconds: {input_timeout}" if input_timeout is not None else ""
    flow = write_flow(f"""
        version: 1
        flow: {{id: slow}}
        jobs:
          - id: j
            steps:
              - {{id: slow, type: external.process, timeout_seconds: {step_timeout},
                  inputs: {{command: {SLEEPER}, kill_grace_seconds: 1{extra}}}}}
              - {{id: after, type: noop}}
        """)
    res = af("run", flow, "--json", "--run-id", "t1")
    assert res.exit_code == 1, res.stderr
    assert "Traceback" not in res.stderr
    shell, sleeper = _pids(pid_file)
    # nothing of the command outlives the step (the grandchild included)
    wait_until(lambda: not alive(shell) and not alive(sleeper), timeout=10, what="the process group to die")
    doc = show(af, "t1")
    slow = step_doc(doc, "j", "slow")
    assert slow["status"] == "FAILED"
    assert "timed out after 1 s" in slow["error"], slow["error"]
    assert doc["run"]["status"] == "FAILED"
    after = [s for s in doc["jobs"][0]["steps"] if s["step_id"] == "after"]
    assert not after or after[0]["status"] == "PENDING", after  # never started


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_commands_are_started_by_the_jobs_thread(af, write_flow: Callable[..., Path]) -> None:
    """No worker thread is started for a flow of external.process steps: the runner that starts
    the command has one thread (its main thread runs the job), with or without a timeout."""
    flow = write_flow("""
        version: 1
        flow: {id: threads}
        jobs:
          - id: j
            steps:
              - {id: plain, type: external.process, inputs: {command: 'echo $PPID; ls /proc/$PPID/task', shell: true}}
              - {id: timed, type: external.process, timeout_seconds: 30,
                 inputs: {command: 'echo $PPID; ls /proc/$PPID/task', shell: true}}
        """)
    res = af("run", flow, "--run-id", "th1")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "th1")
    for step in ("plain", "timed"):
        runner, *tasks = step_doc(doc, "j", step)["outputs"]["stdout"].split()
        assert tasks == [runner], (step, runner, tasks)


def test_sigterm_stops_a_command_inside_with_lock_and_frees_the_lock(
    af, spawn, write_flow: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("PID_FILE", str(pid_file))
    flow = write_flow(f"""
        version: 1
        flow: {{id: locked_cmd}}
        jobs:
          - id: j
            steps:
              - id: guarded
                type: with_lock
                inputs:
                  lock_key: nightly
                  step: {{type: external.process, inputs: {{command: {SLEEPER}, kill_grace_seconds: 1}}}}
        """)
    runner = spawn("run", flow, "--run-id", "lk1")
    shell, sleeper = _pids(pid_file)
    listed = json.loads(af("locks", "list", "--json").stdout)["locks"]
    assert sorted((lk["kind"], lk["run_id"]) for lk in listed) == [("run", "lk1"), ("with_lock", "lk1")]
    err = _stop(runner)
    assert "Traceback" not in err
    wait_until(lambda: not alive(shell) and not alive(sleeper), timeout=10, what="the process group to die")
    doc = show(af, "lk1")
    assert doc["run"]["status"] == "INTERRUPTED"
    guarded = step_doc(doc, "j", "guarded")
    assert (guarded["status"], guarded["error"]) == ("FAILED", "interrupted (SIGTERM)")
    assert json.loads(af("locks", "list", "--json").stdout)["locks"] == []


def test_sigterm_waits_out_the_commands_kill_grace_before_recording_interrupted(
    af, spawn, write_flow: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command that ignores SIGTERM gets its whole ``kill_grace_seconds`` (longer here than the
    8 s the engine grants a Python step) and then SIGKILL, all before the run is recorded
    INTERRUPTED and its locks are released: when the runner has exited, nothing of the step runs
    on that a ``resume`` could overlap."""
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("PID_FILE", str(pid_file))
    flow = write_flow("""
        version: 1
        flow: {id: stubborn}
        jobs:
          - id: j
            steps:
              - {id: s, type: external.process, inputs: {kill_grace_seconds: 9,
                 command: [sh, -c, 'trap "" TERM; echo $$ > "$PID_FILE.tmp"; mv "$PID_FILE.tmp" "$PID_FILE"; while true; do sleep 0.1; done']}}
        """)
    runner = spawn("run", flow, "--run-id", "st1")
    wait_until(pid_file.exists, what="the command to start")
    shell = int(pid_file.read_text())
    _stop(runner)
    assert not alive(shell), "the command outlived the runner"
    doc = show(af, "st1")
    assert doc["run"]["status"] == "INTERRUPTED"
    assert step_doc(doc, "j", "s")["error"] == "interrupted (SIGTERM)"
