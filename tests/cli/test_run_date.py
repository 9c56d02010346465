"""The `run` template root says "today" for a flow: `run.date` is the day the run started
(UTC), taken from the run's recorded start, so a resume on another day renders the same date."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _show(cli, run_id: str) -> dict:
    res = cli("runs", "show", run_id, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _as_if_started_on_2_january_2020(home: Path, run_id: str) -> None:
    """The run's recorded start becomes 2 January 2020, 10:00 UTC."""
    db = sqlite3.connect(home / "state.db")
    with db:
        db.execute("UPDATE runs SET created_at = ? WHERE run_id = ?", (1577959200.0, run_id))
    db.close()


def test_daily_flow_names_its_file_after_the_run_date(cli, home: Path) -> None:
    res = cli("run", str(ROOT / "flows" / "daily.yaml"), "--json")
    doc = json.loads(res.stdout)
    assert doc["status"] == "SUCCESS", res.stderr
    run = _show(cli, doc["run_id"])["run"]
    day = time.strftime("%Y-%m-%d", time.gmtime(run["created_at"]))
    assert run["params"]["date"] == day
    archived = [p.name for p in (home / "work" / "daily_sales" / "archive" / doc["run_id"] / "artifacts").iterdir()]
    assert archived == [f"sales-{day}.csv"]


def test_run_date_comes_from_the_recorded_start_on_resume(cli, home: Path, write_flow, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    flow = write_flow(f"""
        version: 1
        flow:
          id: dated
          params:
            day: {{type: string, default: "{{{{ run.date }}}}"}}
        jobs:
          - id: j
            steps:
              - id: s
                type: external.process
                inputs:
                  command: [sh, -c, 'test -e "$1" && echo "$2 $3 $4 $5"', sh, "{gate}",
                            "{{{{ run.date }}}}", "{{{{ run.local_date }}}}", "{{{{ run.started_at }}}}", "{{{{ params.day }}}}"]
                outputs: {{said: "{{{{ result.stdout }}}}"}}
    """)
    first = json.loads(cli("run", str(flow), "--json").stdout)
    assert first["status"] == "FAILED"
    run_id = first["run_id"]
    started = _show(cli, run_id)["run"]["created_at"]
    day_of_first_run = time.strftime("%Y-%m-%d", time.gmtime(started))
    _as_if_started_on_2_january_2020(home, run_id)  # a resume must render that day
    gate.touch()
    res = cli("resume", run_id)
    assert res.exit_code == 0, res.stderr
    said = _show(cli, run_id)["jobs"][0]["steps"][0]["outputs"]["stdout"].split()
    local = time.strftime("%Y-%m-%d", time.localtime(1577959200.0))
    # params were fixed (and stored) when the run started; the run root follows the record
    assert said == ["2020-01-02", local, "2020-01-02T10:00:00+00:00", day_of_first_run]


def test_resources_and_flow_notifiers_get_the_whole_run_root(cli, home: Path, write_flow, tmp_path: Path) -> None:
    """The `run` root of a resource and of a flow's notifier is the steps' (id, attempt, dates):
    a notifier reading `{{ run.date }}` failed to render, a resource reading `{{ run.attempt }}`
    stopped the run (exit 2)."""
    gate, said = tmp_path / "gate", tmp_path / "notified.txt"
    flow = write_flow(f"""
        version: 1
        flow:
          id: rooted
          notify:
            - on: [failed, succeeded]
              command: [sh, -c, 'echo "$0" >> "{said}"', "{{{{ run.id }}}} {{{{ run.attempt }}}} {{{{ run.date }}}} {{{{ run.started_at }}}} {{{{ run_id }}}}"]
        resources:
          db: {{kind: db, driver: sqlite3, config: {{path: "{tmp_path}/db-{{{{ run.date }}}}-{{{{ run.attempt }}}}.sqlite"}}}}
        jobs:
          - id: first
            steps:
              - {{id: q, type: db_query, inputs: {{resource: db, sql: "SELECT 1 AS one"}}}}
          - id: second
            depends_on: [first]
            steps:
              - {{id: s, type: external.process, inputs: {{command: [test, -e, "{gate}"]}}}}
              - {{id: q, type: db_query, inputs: {{resource: db, sql: "SELECT 1 AS one"}}}}
    """)
    first = json.loads(cli("run", str(flow), "--json").stdout)
    assert first["status"] == "FAILED"
    run_id = first["run_id"]
    day = time.strftime("%Y-%m-%d", time.gmtime(_show(cli, run_id)["run"]["created_at"]))
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(_show(cli, run_id)["run"]["created_at"]))
    assert said.read_text().splitlines() == [f"{run_id} 1 {day} {started} {run_id}"]
    assert (tmp_path / f"db-{day}-1.sqlite").exists()
    _as_if_started_on_2_january_2020(home, run_id)
    gate.touch()
    res = cli("resume", run_id)
    assert res.exit_code == 0, res.stderr
    assert said.read_text().splitlines()[1] == f"{run_id} 2 2020-01-02 2020-01-02T10:00:00+00:00 {run_id}"
    assert (tmp_path / "db-2020-01-02-2.sqlite").exists()  # the resumed attempt's resource, opened by second.q
