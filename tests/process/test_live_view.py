"""The live view in a real terminal (tmux: new-session, capture-pane): parallel jobs each with
their steps under them, a spinner that moves, the run id, jobs done of total, the elapsed time,
and a final table that matches `runs show`. Whether there is a live view at all is rich's
decision (TTY_COMPATIBLE, TTY_INTERACTIVE, FORCE_COLOR, TERM=dumb), checked in and out of tmux."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import q, show, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: the live view is not checked")

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Pane:
    """One tmux session on a private server, running one shell command."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.socket = f"aetherflow-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.tmux("new-session", "-d", "-s", "t", "-x", "150", "-y", "45", f"{command}; echo EXIT=$?; sleep 600")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True,
                              timeout=30, check=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)


@pytest.fixture
def pane(home: Path) -> Iterator[type[Pane]]:
    opened: list[Pane] = []

    def start(command: str, **env: str) -> Pane:
        e = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        # set in the pane's shell: tmux sets TERM there itself
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        p = Pane(f"env {prefix} {command}" if prefix else command, e)
        opened.append(p)
        return p

    yield start  # type: ignore[misc]
    for p in opened:
        p.close()


def aetherflow(*args: str | Path) -> str:
    return " ".join(shlex.quote(str(a)) for a in (sys.executable, "-m", "aetherflow", *args))


def rows(screen: str) -> list[str]:
    return [line.rstrip() for line in screen.splitlines() if line.strip()]


def test_parallel_jobs_live_and_the_final_table(pane, af, write_flow, tmp_path: Path) -> None:
    go_a, go_b = tmp_path / "go_a", tmp_path / "go_b"
    flow = write_flow(f"""
        version: 1
        flow: {{id: twojobs, max_parallel_jobs: 2}}
        jobs:
          - id: alpha
            steps:
              - {{id: a_wait, type: external.process, inputs: {{command: 'while [ ! -e {q(go_a)} ]; do sleep 0.05; done', shell: true}}}}
              - {{id: a_done, type: noop}}
          - id: beta
            steps:
              - {{id: b_wait, type: external.process, inputs: {{command: 'while [ ! -e {q(go_b)} ]; do sleep 0.05; done', shell: true}}}}
              - {{id: b_done, type: noop}}
        """)
    p = pane(aetherflow("run", flow, "--run-id", "live1"))
    wait_until(lambda: "b_wait" in p.screen() and "a_wait" in p.screen(), what="both jobs' first steps on screen")
    screen = p.screen()
    lines = rows(screen)
    assert re.match(r"^run live1  jobs 0/2 done  elapsed \d", lines[0]), screen
    names = [line.split()[1] if line[0] != " " else line.split()[0] for line in lines[1:]]
    # each step right under its own job, whatever order the events came in
    assert names == ["alpha", "a_wait", "beta", "b_wait"], screen
    for step in ("a_wait", "b_wait"):
        assert "RUNNING" in next(line for line in lines if step in line)
    # the spinner moves: the running step's first character changes between captures
    first = next(line for line in rows(p.screen()) if "a_wait" in line).lstrip()[0]
    assert first in SPINNER
    wait_until(lambda: next(line for line in rows(p.screen()) if "a_wait" in line).lstrip()[0] != first,
               what="the spinner to move")
    go_a.touch()
    wait_until(lambda: "jobs 1/2 done" in p.screen(), what="one job done")
    screen = p.screen()
    assert "a_done" in screen and "SUCCESS" in next(line for line in rows(screen) if "a_done" in line)
    names = [line.split()[1] if line[0] != " " else line.split()[0] for line in rows(screen)[1:]]
    assert names == ["alpha", "a_wait", "a_done", "beta", "b_wait"], screen
    go_b.touch()
    wait_until(lambda: "EXIT=" in p.screen(), what="the run to end")
    final = p.screen()
    assert "EXIT=0" in final
    assert "jobs 2/2 done" not in final  # the live part is gone; the table stays
    table = rows(final[: final.index("run live1 SUCCESS (")])  # the summary line follows the table
    assert table[0].split() == ["run", "live1", "flow", "twojobs", "SUCCESS"]
    assert table[1].split() == ["job", "/", "step", "status", "attempt", "time", "note"]
    body = table[2:]
    from aetherflow.render import run_rows

    doc = show(af, "live1")
    expected = run_rows(doc)
    assert len(body) == len(expected), final
    for line, row in zip(body, expected, strict=True):
        name = row["step"] or row["job"]
        assert name in line.split() and row["status"] in line.split(), (line, row)
        if row["attempt"]:
            assert str(row["attempt"]) in line.split(), (line, row)
    # the same order as runs show: each job, then its steps
    assert [r["step"] or r["job"] for r in expected] == ["alpha", "a_wait", "a_done", "beta", "b_wait", "b_done"]


@pytest.mark.parametrize("env", [{"TTY_COMPATIBLE": "0"}, {"TERM": "dumb"}, {"TTY_INTERACTIVE": "0"}],
                         ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_rich_decides_there_is_no_live_view(pane, write_flow, env: dict[str, str]) -> None:
    flow = write_flow("version: 1\nflow: {id: quiet}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    p = pane(aetherflow("run", flow), **env)
    wait_until(lambda: "EXIT=" in p.screen(), what="the run to end")
    assert rows(p.screen()) == ["EXIT=0"]  # nothing on success, as under cron


def test_colour_follows_no_color_and_no_color_flag(pane, write_flow) -> None:
    flow = write_flow("version: 1\nflow: {id: tint}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    coloured = pane(aetherflow("run", flow))
    wait_until(lambda: "EXIT=" in coloured.screen(), what="the run to end")
    assert "\x1b[32m" in coloured.tmux("capture-pane", "-p", "-e", "-t", "t")  # SUCCESS in green
    for command, env in ((aetherflow("run", flow, "--no-color"), {}), (aetherflow("run", flow), {"NO_COLOR": "1"})):
        plain = pane(command, **env)
        wait_until(lambda p=plain: "EXIT=" in p.screen(), what="the run to end")
        escaped = plain.tmux("capture-pane", "-p", "-e", "-t", "t")
        assert "SUCCESS" in escaped and "\x1b[32m" not in escaped


def test_a_forced_terminal_outside_a_terminal(cli, write_flow) -> None:
    """TTY_COMPATIBLE=1 and TTY_INTERACTIVE=1 make rich draw the live view even into a pipe (the
    in-process runner's stderr): the final table follows; TTY_INTERACTIVE=0 keeps it plain."""
    flow = write_flow("version: 1\nflow: {id: forced}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    res = cli("run", str(flow), "--json", env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert res.exit_code == 0
    run_id = json.loads(res.stdout)["run_id"]
    assert f"run {run_id}  flow forced  SUCCESS" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", res.stderr)
    plain = cli("run", str(flow), env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"})
    assert plain.exit_code == 0 and plain.stderr == ""
