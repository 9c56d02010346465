"""What the operator reads: `runs show` keeps the indentation of multi-line errors and names a
step once, a CRASHED run's duration is how long it ran, an interrupted run is not "1 failed",
`steps list` shows whole sentences, `locks list` has a header."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from support import q

from tests.conftest import wait_for

FAILING = """
version: 1
flow: {id: failing}
jobs:
  - id: a
    steps:
      - id: boom
        type: external.process
        inputs: {command: [sh, -c, 'echo "Traceback:" >&2; echo "  File x, line 3" >&2; echo "    raise Oops" >&2; exit 3']}
"""


def test_runs_show_keeps_multi_line_errors_indented_and_names_the_step_once(af, write_flow) -> None:
    res = af("run", str(write_flow(FAILING)), "--run-id", "f1")
    assert res.exit_code == 1
    summary = res.stderr.splitlines()
    i = summary.index("  failed: a.boom: command failed with exit code 3 (accepted: 0)")
    assert summary[i + 1: i + 5] == ["    last lines of stderr:", "    Traceback:", "      File x, line 3",
                                     "        raise Oops"]
    shown = af("runs", "show", "f1").stdout
    assert shown.count("step 'boom'") == 1, shown  # in the job's reason only
    lines = shown.splitlines()
    assert "  job a: FAILED — step 'boom' failed: command failed with exit code 3 (accepted: 0) …" in lines
    i = lines.index("      error: command failed with exit code 3 (accepted: 0)")
    assert lines[i + 1: i + 5] == ["        last lines of stderr:", "        Traceback:", "          File x, line 3",
                                   "            raise Oops"]
    # every line of the text belongs under its heading: nothing falls back to column 0
    assert all(ln.startswith("  ") for ln in lines[1:]), shown
    # the stored error is kept whole for --json
    step = json.loads(af("runs", "show", "f1", "--json").stdout)["jobs"][0]["steps"][0]
    assert step["error"].startswith("step 'boom': command failed")


SLOW = """
version: 1
flow: {{id: slow}}
jobs:
  - id: a
    steps:
      - {{id: first, type: external.process, inputs: {{command: [sleep, "0.2"]}}}}
      - {{id: hang, type: external.process, inputs: {{command: [sh, -c, 'touch {marker}; exec sleep 300']}}}}
"""


def test_a_crashed_runs_duration_is_how_long_it_ran(af, spawn, write_flow, tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    proc = spawn("run", str(write_flow(SLOW.format(marker=q(marker)))), "--run-id", "c1")
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (row,) = json.loads(af("runs", "list", "--json").stdout)["runs"]
    assert row["status"] == "CRASHED"
    doc = json.loads(af("runs", "show", "c1", "--json", "--history").stdout)
    last = doc["history"][-1]["ts"]
    assert last > doc["run"]["created_at"]
    assert abs(row["duration"] - (last - doc["run"]["created_at"])) < 1e-6  # until the last thing it recorded
    first = doc["jobs"][0]["steps"][0]
    assert row["duration"] >= first["finished_at"] - first["started_at"] > 0
    table = af("runs", "list").stdout.splitlines()
    assert re.search(r"CRASHED\s+\S+ \S+\s+\d", table[1]) and " 0ms" not in table[1], table


def test_an_interrupted_run_is_not_counted_as_failed(spawn, write_flow, tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    proc = spawn("run", str(write_flow(SLOW.format(marker=q(marker)))), "--run-id", "i1")
    assert wait_for(marker.exists, timeout=60)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    lines = err.splitlines()
    assert "run i1 INTERRUPTED (1 interrupted)" in lines, err
    assert "  a.hang: interrupted (SIGTERM)" in lines, err
    assert "failed" not in err


def test_steps_list_shows_whole_first_sentences(cli) -> None:
    res = cli("steps", "list")
    assert res.exit_code == 0
    full = {r["type"]: r["description"] for r in json.loads(cli("steps", "list", "--json").stdout)["steps"]}
    for line in res.stdout.splitlines():
        name, rest = line.split(None, 1)
        shown = rest.rsplit("  [", 1)[0]
        assert full[name].startswith(shown), (name, shown)
        assert shown.endswith((".", "!", "?")) or shown == full[name], (name, shown)
    # a summary wrapped over several docstring lines is whole, not cut at the line end
    from aetherflow.steps.data import DbExtract

    paragraph = " ".join((DbExtract.__doc__ or "").split("\n\n")[0].split())
    assert "\n" in (DbExtract.__doc__ or "").split("\n\n")[0] and full["db_extract"] == paragraph


def test_locks_list_has_a_header(af, spawn, write_flow, tmp_path: Path) -> None:
    marker, gate = tmp_path / "inside", tmp_path / "gate"
    flow = write_flow(f"""
        version: 1
        flow: {{id: locker}}
        jobs:
          - id: a
            steps:
              - id: hold
                type: with_lock
                inputs:
                  lock_key: "export:orders"
                  step: {{type: external.process, inputs: {{command: [sh, -c, 'touch {q(marker)}; while [ ! -f {q(gate)} ]; do sleep 0.05; done']}}}}
    """)
    proc = spawn("run", str(flow), "--run-id", "l1")
    try:
        assert wait_for(marker.exists, timeout=60)
        lines = af("locks", "list").stdout.splitlines()
        assert lines[0].split() == ["LOCK", "KIND", "RUN", "ID", "PID", "HOST", "SINCE"]
        rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
        assert rows["user:export:orders"][1:4] == ["with_lock", "l1", str(proc.pid)]
        assert rows["user:export:orders"][4] == os.uname().nodename
    finally:
        gate.touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0
