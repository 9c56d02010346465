"""What an operator sees: silence under cron on success, a short actionable summary on
failure, no control codes in a pipe, a live view on a terminal, JSON logs on request."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

ESC = re.compile(r"\x1b\[")

OK_FLOW = """
version: 1
flow: {id: out_ok}
jobs:
  - id: a
    steps:
      - {id: s1, type: external.process, inputs: {command: [sh, -c, "echo hello"]}}
      - {id: s2, type: noop}
  - id: b
    depends_on: [a]
    steps:
      - {id: s3, type: debug, inputs: {message: "[bold]not markup[/bold]"}}
"""

FAIL_FLOW = """
version: 1
flow: {id: out_fail}
jobs:
  - id: load
    steps:
      - {id: copy, type: external.process, inputs: {command: [sh, -c, "echo boom >&2; exit 3"]}}
"""


def cron_env(home: Path) -> dict[str, str]:
    """What cron gives a job: a minimal PATH, no TERM, no HOME-dependent config."""
    env = {"PATH": "/usr/bin:/bin", "AETHERFLOW_HOME": str(home), "LANG": "C.UTF-8"}
    # keep the interpreter importable when it lives outside /usr/bin
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def run_piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aetherflow", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cron_success_is_silent(home: Path, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    res = run_piped(["run", str(flow)], cron_env(home))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert res.stderr == ""


def test_cron_failure_prints_short_summary_without_control_codes(home: Path, write_flow) -> None:
    flow = write_flow(FAIL_FLOW)
    res = run_piped(["run", str(flow)], cron_env(home))
    assert res.returncode == 1
    assert res.stdout == ""
    assert not ESC.search(res.stderr)
    assert "Traceback" not in res.stderr
    assert "load.copy" in res.stderr and "exit" in res.stderr.lower()
    m = re.search(r"resume with: aetherflow resume (\S+)", res.stderr)
    assert m, res.stderr
    shown = run_piped(["runs", "show", m.group(1), "--json"], cron_env(home))
    assert json.loads(shown.stdout)["run"]["status"] == "FAILED"


def test_verbose_progress_in_a_pipe_has_no_escape_codes(home: Path, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    res = run_piped(["run", str(flow), "-v"], cron_env(home))
    assert res.returncode == 0
    assert "start  a.s1" in res.stderr and "job    b SUCCESS" in res.stderr
    assert "[bold]not markup[/bold]" in res.stderr  # untrusted text shown literally
    assert not ESC.search(res.stderr)


def test_json_logs_are_json_lines(home: Path, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    res = run_piped(["run", str(flow), "-v", "--log-format", "json", "--json"], cron_env(home))
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 1 and doc["status"] == "SUCCESS"
    logs = [line for line in res.stderr.splitlines() if line.startswith("{")]
    assert logs, res.stderr
    for line in logs:
        rec = json.loads(line)
        assert {"ts", "level", "message"} <= set(rec)


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(sys.executable, [sys.executable, "-m", "aetherflow", *args], env)
    chunks: list[bytes] = []
    while True:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_live_view_and_summary_table(home: Path, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    env = {**cron_env(home), "TERM": "xterm-256color", "COLUMNS": "120"}
    code, out = run_in_pty(["run", str(flow)], env)
    assert code == 0
    assert "job / step" in out  # the summary table header
    assert "s3" in out and "SUCCESS" in out


def test_no_color_on_a_terminal(home: Path, write_flow) -> None:
    flow = write_flow(OK_FLOW)
    env = {**cron_env(home), "TERM": "xterm-256color", "NO_COLOR": "1"}
    code, out = run_in_pty(["run", str(flow)], env)
    assert code == 0
    assert not re.search(r"\x1b\[3[0-9]m", out)  # no foreground colours


def test_quiet_waiting_prints_one_line(home: Path, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: out_wait}
        jobs:
          - id: a
            steps:
              - {id: w, type: wait_for_event, inputs: {events: [go]}}
        """)
    res = run_piped(["run", str(flow), "-q"], cron_env(home))
    assert res.returncode == 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "waits for event go" in lines[0]


TICK_FLOW = """
version: 1
flow: {id: out_tick}
jobs:
  - id: a
    steps:
      - id: ticker
        type: external.process
        inputs: {command: [sh, -c, "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.3; done"]}
"""


def test_terminal_view_shows_the_tail_of_a_running_process(home: Path, write_flow, tmp_path: Path) -> None:
    flow = write_flow(TICK_FLOW)
    log = tmp_path / "events.jsonl"
    env = {**cron_env(home), "TERM": "xterm-256color", "COLUMNS": "120"}
    code, out = run_in_pty(["run", str(flow), "--events-log", str(log)], env)
    assert code == 0
    assert re.search(r"> tick-\d", out), out
    names = {json.loads(line)["event"] for line in log.read_text().splitlines()}
    assert "step.finished" in names and "step.progress" not in names  # transient: display only
