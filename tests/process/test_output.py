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
import time
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


# ---------------------------------------------------------------------------------------------
# steps and their children never write to stdout; every stderr line is JSON with
# --log-format json; a WAITING summary still names failures; third-party logging is masked

NOISY_PLUGIN = '''
import logging
import os

from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step

print("Z-plugin-import-print")


@register_step("noisy.talk", inputs_schema={"type": "object"})
class Talk(Step):
    def run(self, ctx, inputs):
        print("X-step-print")
        os.system("echo Y-child-echo")
        return StepResult(STEP_SUCCESS, {})


@register_step("noisy.leak", inputs_schema={"type": "object"})
class Leak(Step):
    def run(self, ctx, inputs):
        logging.getLogger("thirdparty.lib").warning("token is %s", inputs["token"])
        logging.getLogger("thirdparty.lib").error("raw " + str(inputs["token"]))
        return StepResult(STEP_SUCCESS, {})
'''

NOISY_FLOW = """
version: 1
flow: {id: out_noisy}
jobs:
  - id: a
    steps:
      - {id: talk, type: noisy.talk}
"""


def noisy_plugin(tmp_path: Path) -> Path:
    d = tmp_path / "noisy_plugins"
    d.mkdir(exist_ok=True)
    (d / "noisy_steps.py").write_text(NOISY_PLUGIN, encoding="utf-8")
    return d


def test_step_prints_and_child_output_never_reach_stdout_with_json(home: Path, write_flow, tmp_path: Path) -> None:
    flow = write_flow(NOISY_FLOW)
    res = run_piped(["run", str(flow), "--plugin-path", str(noisy_plugin(tmp_path)), "--json"], cron_env(home))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # one JSON document, nothing else
    assert doc["status"] == "SUCCESS"
    for noise in ("X-step-print", "Y-child-echo", "Z-plugin-import-print"):
        assert noise not in res.stdout
        assert noise in res.stderr  # redirected, not lost


def test_step_prints_under_cron_leave_stdout_empty(home: Path, write_flow, tmp_path: Path) -> None:
    flow = write_flow(NOISY_FLOW)
    res = run_piped(["run", str(flow), "--plugin-path", str(noisy_plugin(tmp_path))], cron_env(home))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert "X-step-print" in res.stderr and "Y-child-echo" in res.stderr


def test_due_sweep_keeps_step_output_off_stdout(home: Path, write_flow, tmp_path: Path) -> None:
    from tests.conftest import wait_for

    flow = write_flow("""
        version: 1
        flow: {id: out_noisy_due}
        jobs:
          - id: a
            steps:
              - {id: pause, type: wait, inputs: {seconds: 1}}
              - {id: talk, type: noisy.talk}
        """)
    env = {**cron_env(home), "AETHERFLOW_INLINE_WAIT_MAX": "0"}
    res = run_piped(["run", str(flow), "--plugin-path", str(noisy_plugin(tmp_path)), "--run-id", "noisy-1"], env)
    assert res.returncode == 0, res.stderr
    due = json.loads(run_piped(["runs", "show", "noisy-1", "--json"], env).stdout)["run"]["due_at"]
    assert due is not None
    assert wait_for(lambda: time.time() > due + 0.05, timeout=30)
    res = run_piped(["resume", "--due", "--json"], env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [r["status"] for r in doc["due"]] == ["SUCCESS"]
    assert "X-step-print" not in res.stdout and "Y-child-echo" not in res.stdout
    assert "X-step-print" in res.stderr and "Y-child-echo" in res.stderr


def assert_json_lines(stderr: str) -> list[dict]:
    records = []
    for line in stderr.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON line: {line!r}\n--- stderr:\n{stderr}") from None
    return records


def test_json_log_format_makes_every_stderr_line_json_on_failure(home: Path, write_flow) -> None:
    flow = write_flow(FAIL_FLOW)
    res = run_piped(["run", str(flow), "-v", "--log-format", "json"], cron_env(home))
    assert res.returncode == 1
    assert res.stdout == ""
    records = assert_json_lines(res.stderr)
    assert all({"ts", "level", "message"} <= set(r) for r in records), records
    messages = [r["message"] for r in records]
    assert any(m.startswith("start  load.copy") for m in messages)  # progress
    assert any("FAILED" in m and r["level"] == "error" for m, r in zip(messages, records, strict=True))
    assert any(m.startswith("resume with: aetherflow resume ") for m in messages)  # summary
    progress = next(r for r in records if r.get("event") == "step.started")
    assert progress["job_id"] == "load" and progress["step_id"] == "copy"


def test_json_log_format_covers_warnings_and_usage_errors(home: Path, write_flow, tmp_path: Path) -> None:
    plugins = tmp_path / "broken_plugins"
    plugins.mkdir()
    (plugins / "broken_one.py").write_text("import aetherflow_no_such_module  # noqa\n", encoding="utf-8")
    flow = write_flow(OK_FLOW)
    res = run_piped(["run", str(flow), "--plugin-path", str(plugins), "--log-format", "json"], cron_env(home))
    assert res.returncode == 0, res.stderr
    records = assert_json_lines(res.stderr)
    assert any(r["level"] == "warning" and "broken_one" in r["message"] for r in records), records

    bad = write_flow("version: 1\nflow: {id: x}\njobs: []\nbogus: 1\n", name="bad.yaml")
    res = run_piped(["run", str(bad), "--log-format", "json"], cron_env(home))
    assert res.returncode == 2
    records = assert_json_lines(res.stderr)
    assert records and all(r["level"] == "error" for r in records)


WAIT_AND_FAIL_FLOW = """
version: 1
flow: {id: out_wait_fail}
jobs:
  - id: a
    steps:
      - {id: w, type: wait_for_event, inputs: {events: [go]}}
  - id: b
    steps:
      - {id: bad, type: external.process, inputs: {command: [sh, -c, "echo boom >&2; exit 3"]}}
  - id: c
    depends_on: [b]
    steps:
      - {id: n, type: noop}
"""


def test_waiting_summary_also_lists_failed_and_blocked_jobs(home: Path, write_flow) -> None:
    flow = write_flow(WAIT_AND_FAIL_FLOW)
    for extra in ([], ["-q"]):
        res = run_piped(["run", str(flow), *extra], cron_env(home))
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert "is WAITING" in lines[0] and "waits for event go" in lines[0], res.stderr
        assert any(line.startswith("  failed: b.bad:") and "exit code 3" in line for line in lines), res.stderr
        assert any(line.startswith("  blocked: c:") and "upstream job 'b'" in line for line in lines), res.stderr


LEAK_FLOW = """
version: 1
flow: {id: out_leak}
secrets:
  x: {env: OUT_LEAK_SECRET}
jobs:
  - id: a
    steps:
      - {id: leak, type: noisy.leak, inputs: {token: "{{ secrets.x }}"}}
"""


def test_third_party_logging_is_masked(home: Path, write_flow, tmp_path: Path) -> None:
    flow = write_flow(LEAK_FLOW)
    secret = "s3cr3t-Vq9-leaky"
    env = {**cron_env(home), "OUT_LEAK_SECRET": secret}
    for fmt in ("text", "json"):
        res = run_piped(["run", str(flow), "--plugin-path", str(noisy_plugin(tmp_path)), "--log-format", fmt], env)
        assert res.returncode == 0, res.stderr
        assert secret not in res.stderr and secret not in res.stdout
        assert "token is ***" in res.stderr and "raw ***" in res.stderr, res.stderr
