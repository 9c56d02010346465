"""`aetherflow status` (what ran, runs, waits, crashed, which locks are held) and retention:
`runs prune` removes everything a run left (records, history, logs, workspace, run lock file),
with `[retention] max_age` as its default cut-off."""

from __future__ import annotations

import json
from pathlib import Path

from support import q, wait_until


def test_status_shows_one_screen(af, spawn, write_flow, tmp_path: Path, home: Path) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    ok = write_flow("version: 1\nflow: {id: daily}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n", name="ok.yaml")
    waits = write_flow("""
        version: 1
        flow: {id: approvals}
        jobs:
          - id: a
            steps:
              - {id: gate, type: wait_for_event, inputs: {events: [approved]}}
        """, name="wait.yaml")
    crashy = write_flow("version: 1\nflow: {id: fragile}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n",
                        name="crash.yaml")
    long = write_flow(f"""
        version: 1
        flow: {{id: hourly, locks: {{scope: flow}}}}
        jobs:
          - id: a
            steps:
              - id: s
                type: external.process
                inputs: {{command: 'touch {q(started)}; while [ ! -e {q(go)} ]; do sleep 0.05; done', shell: true}}
        """, name="long.yaml")
    assert af("run", ok, "--run-id", "ok1").exit_code == 0
    assert af("run", waits, "--run-id", "w1").exit_code == 0
    assert af("run", crashy, "--run-id", "c1", env={"AETHERFLOW_TEST_CRASH_AT": "step.started:a.s"}).exit_code == -9
    proc = spawn("run", long, "--run-id", "r1")
    try:
        wait_until(started.exists, what="the long run to start")
        res = af("status", "--json")
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        flows = {f["flow_id"]: f for f in doc["flows"]}
        assert sorted(flows) == ["approvals", "daily", "fragile", "hourly"]
        assert flows["daily"]["last_run"]["status"] == "SUCCESS" and flows["daily"]["last_success_at"]
        assert flows["approvals"]["last_run"]["status"] == "WAITING"
        assert flows["fragile"]["last_run"]["status"] == "CRASHED"
        assert flows["hourly"]["last_run"]["status"] == "RUNNING"
        [running] = doc["running"]
        assert (running["run_id"], running["pid"]) == ("r1", proc.pid) and running["host"]
        assert [(w["run_id"], w["waits"][0]["events"]) for w in doc["waiting"]] == [("w1", ["approved"])]
        assert [c["run_id"] for c in doc["crashed"]] == ["c1"]
        held = {lk["lock"]: lk for lk in doc["locks"]}
        assert held["flow:hourly"]["run_id"] == "r1" and held["run:r1"]["pid"] == proc.pid
        text = af("status").stdout
        assert text.splitlines()[0].split() == ["FLOW", "LAST", "RUN", "STATUS", "STARTED", "DURATION", "LAST", "SUCCESS"]
        assert "running:\n  r1  flow hourly  pid" in text
        assert "waiting:\n  w1  flow approvals  a.gate waits for event approved" in text
        assert "crashed:\n  c1  flow fragile" in text and "(aetherflow resume c1)" in text
        assert "flow:hourly  flow  run r1" in text
    finally:
        go.touch()
        proc.wait(timeout=60)


def test_status_of_an_empty_machine(af) -> None:
    res = af("status")
    assert res.exit_code == 0
    assert res.stdout.startswith("no runs recorded yet\n\nrunning: none")


def test_prune_removes_everything_a_run_left(af, write_flow, tmp_path: Path, home: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: tidy, workspace: {root: work}, locks: {scope: flow}}
        jobs:
          - id: a
            steps:
              - {id: s, type: external.process, inputs: {command: [sh, -c, 'echo out > artifacts/f; echo logged']}}
        """)
    for rid in ("old1", "old2", "keep"):
        assert af("run", flow, "--run-id", rid).exit_code == 0
    locks = home / "locks"
    run_lock_files = lambda: sorted(p.name.split(".")[0] for p in locks.iterdir() if p.name.startswith("run_"))  # noqa: E731
    assert run_lock_files() == ["run_keep", "run_old1", "run_old2"]
    assert (tmp_path / "work" / "tidy" / "a" / "old1" / "artifacts" / "f").exists()
    age_runs(home, "old%", days=40)  # the cut-off falls between them and `keep`
    dry = af("runs", "prune", "--older-than", "30d")
    assert dry.exit_code == 0
    assert dry.stdout.splitlines()[0] == "would delete (add --yes) 2 run(s)"
    assert sorted(dry.stdout.splitlines()[1:]) == ["  old1", "  old2"]
    assert run_lock_files() == ["run_keep", "run_old1", "run_old2"]  # a dry run changes nothing
    res = af("runs", "prune", "--older-than", "30d", "--yes", "--json")
    assert res.exit_code == 0, res.stderr
    assert sorted(json.loads(res.stdout)["pruned"]) == ["old1", "old2"]
    assert run_lock_files() == ["run_keep"]
    assert any(p.name.startswith("flow_tidy") for p in locks.iterdir())  # shared locks stay
    assert not (tmp_path / "work" / "tidy" / "a" / "old1").exists()
    assert (tmp_path / "work" / "tidy" / "a" / "keep").exists()
    assert af("runs", "logs", "old1").exit_code == 2  # its logs went with it
    assert "logged" in af("runs", "logs", "keep").stdout
    assert af("resume", "old1").exit_code == 2


def test_retention_max_age_is_the_default_cut_off(af, write_flow, home: Path) -> None:
    flow = write_flow("version: 1\nflow: {id: f}\njobs:\n  - id: a\n    steps: [{id: s, type: noop}]\n")
    assert af("run", flow, "--run-id", "r1").exit_code == 0
    res = af("runs", "prune", "--yes")
    assert res.exit_code == 2 and "--older-than" in res.stderr and "[retention] max_age" in res.stderr
    assert af("run", flow, "--run-id", "r2").exit_code == 0
    age_runs(home, "r1", days=3)
    (home / "config.toml").write_text('[retention]\nmax_age = "2d"\n')
    res = af("runs", "prune", "--yes", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["pruned"] == ["r1"]
    assert json.loads(af("runs", "prune", "--older-than", "1d", "--json").stdout)["would_prune"] == []  # the flag wins
    age_runs(home, "r2", days=3)
    quiet = af("runs", "prune", "--yes", "--quiet")  # for cron: nothing to mail
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert json.loads(af("runs", "list", "--json").stdout)["runs"] == []


def age_runs(home: Path, pattern: str, *, days: int) -> None:
    """Make the runs whose id matches ``pattern`` (SQL LIKE) finished ``days`` days earlier."""
    import sqlite3

    db = sqlite3.connect(home / "state.db")
    with db:
        db.execute("UPDATE runs SET created_at=created_at-86400*?, finished_at=finished_at-86400*? WHERE run_id LIKE ?",
                   (days, days, pattern))
    db.close()
