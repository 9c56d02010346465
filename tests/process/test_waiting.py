"""Waiting runs between real processes: events delivered by `resume --event` (by run id or by
business key), timers and long retry delays honoured by `resume --due`, overlapping sweeps that
resume a run exactly once, cancel of a waiting run, and the JSON-lines events log.

`AETHERFLOW_INLINE_WAIT_MAX=0` parks every wait and retry delay, so 1-second timers replace long
sleeps. No timed asserts: the checks are on recorded states, history, outputs and files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support import job_doc, q, show, step_doc

from tests.conftest import wait_for

# the same tests with the store selected by a PostgreSQL URL (tests/conftest.py)
pytestmark = pytest.mark.store_backends

PARK = {"AETHERFLOW_INLINE_WAIT_MAX": "0"}


def events(doc: dict, name: str) -> list[dict]:
    return [e for e in doc["history"] if e["event"] == name]


def wait_until_due(af, run_id: str) -> None:
    due = show(af, run_id)["run"]["due_at"]
    assert due is not None
    assert wait_for(lambda: time.time() > due + 0.05, timeout=30)


def lines_of(p: Path) -> list[str]:
    return p.read_text().split() if p.exists() else []




# ---------------------------------------------------------------------------------------------
# events


def approval_flow(side: Path, parallel: int = 1) -> str:
    return f"""
version: 1
flow:
  id: order_approval
  unique: {{key: orderid, scope: flow}}
  max_parallel_jobs: {parallel}
jobs:
  - id: approve
    steps:
      - id: wait_approval
        type: wait_for_event
        inputs: {{events: [approved, rejected]}}
        on_outcome: {{rejected: fail, timeout: skip_job}}
  - id: ship
    depends_on: [approve]
    steps:
      - id: note
        type: debug
        inputs: {{message: "approved by {{{{ jobs.approve.steps.wait_approval.outputs.by:unknown }}}}"}}
  - id: side
    steps:
      - id: work
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(f"echo side >> {q(side)}")}]}}
"""


@pytest.mark.parametrize("parallel", [1, 3])
def test_event_resumes_a_waiting_run_and_downstream_reads_its_data(af, write_flow, tmp_path: Path, parallel: int) -> None:
    side = tmp_path / "side"
    flow = write_flow(approval_flow(side, parallel))
    res = af("run", flow, "--run-id", "appr-1")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr
    assert "appr-1" in err[0] and "WAITING" in err[0] and "approved" in err[0] and "approve.wait_approval" in err[0]

    doc = show(af, "appr-1")
    assert doc["run"]["status"] == "WAITING"
    assert job_doc(doc, "approve")["status"] == "WAITING"
    assert job_doc(doc, "ship")["status"] == "PENDING"  # downstream of the waiting job waits too
    assert job_doc(doc, "side")["status"] == "SUCCESS"  # other runnable jobs went on
    assert step_doc(doc, "approve", "wait_approval")["status"] == "WAITING"
    assert doc["waits"] == [{"job_id": "approve", "step_id": "wait_approval", "kind": "event",
                             "events": ["approved", "rejected"], "due_at": None}]

    res = af("resume", "appr-1", "--event", "approved", "--data", '{"by":"ops"}')
    assert res.exit_code == 0, res.stderr
    doc = show(af, "appr-1", history=True)
    assert doc["run"]["status"] == "SUCCESS"
    step = step_doc(doc, "approve", "wait_approval")
    assert step["status"] == "SUCCESS"
    assert step["outcome"] == "approved"
    assert step["outputs"] == {"by": "ops"}
    assert job_doc(doc, "approve")["outcome"] == "approved"
    assert step_doc(doc, "ship", "note")["outputs"] == {"message": "approved by ops"}
    assert doc["waits"] == []
    received = events(doc, "event.received")
    assert len(received) == 1 and received[0]["data"]["event"] == "approved"
    assert lines_of(side) == ["side"]  # the finished job was not run again


def test_waiting_exit_code_5_with_detailed_exitcode(af, write_flow, tmp_path: Path) -> None:
    flow = write_flow(approval_flow(tmp_path / "side"))
    res = af("run", flow, "--detailed-exitcode")
    assert res.exit_code == 5, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "approved" in res.stderr


def test_wrong_event_exits_2_listing_expected_events(af, write_flow, tmp_path: Path) -> None:
    flow = write_flow(approval_flow(tmp_path / "side"))
    assert af("run", flow, "--run-id", "appr-2").exit_code == 0
    res = af("resume", "appr-2", "--event", "shipped", "--data", '{"x": 1}')
    assert res.exit_code == 2, res.stderr
    assert "shipped" in res.stderr and "approved, rejected" in res.stderr
    assert "Traceback" not in res.stderr
    doc = show(af, "appr-2", history=True)
    assert doc["run"]["status"] == "WAITING"  # untouched, still resumable with the right event
    assert events(doc, "event.received") == [] and events(doc, "run.resumed") == []
    res = af("resume", "appr-2", "--event", "rejected")
    assert res.exit_code == 1, res.stderr  # on_outcome rejected: fail
    doc = show(af, "appr-2")
    assert step_doc(doc, "approve", "wait_approval")["outcome"] == "rejected"
    assert job_doc(doc, "approve")["status"] == "FAILED"
    assert job_doc(doc, "ship")["status"] == "BLOCKED"


def test_event_for_a_run_that_is_not_waiting_exits_2_with_its_status(af, write_flow, tmp_path: Path) -> None:
    failing = write_flow("""
        version: 1
        flow: {id: broken}
        jobs:
          - id: j
            steps:
              - {id: s, type: external.process, inputs: {command: [sh, -c, "exit 4"]}}
        """, "broken.yaml")
    assert af("run", failing, "--run-id", "failed-run").exit_code == 1
    res = af("resume", "failed-run", "--event", "approved")
    assert res.exit_code == 2, res.stderr
    assert "FAILED" in res.stderr and "not WAITING" in res.stderr
    assert show(af, "failed-run")["run"]["status"] == "FAILED"

    # an event delivered twice: the second finds the run finished
    flow = write_flow(approval_flow(tmp_path / "side"))
    assert af("run", flow, "--run-id", "appr-3").exit_code == 0
    assert af("resume", "appr-3", "--event", "approved").exit_code == 0
    res = af("resume", "appr-3", "--event", "approved")
    assert res.exit_code == 2, res.stderr
    assert "SUCCESS" in res.stderr and "not WAITING" in res.stderr
    assert len(events(show(af, "appr-3", history=True), "event.received")) == 1


def test_resume_by_business_key(af, write_flow, tmp_path: Path) -> None:
    flow = write_flow(approval_flow(tmp_path / "side"))
    assert af("run", flow, "--key", "o42", "--run-id", "key-42").exit_code == 0
    assert af("run", flow, "--key", "o43", "--run-id", "key-43").exit_code == 0
    res = af("resume", "--key", "o42", "--event", "approved", "--data", '{"by": "ana"}')
    assert res.exit_code == 0, res.stderr
    doc = show(af, "key-42")
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "ship", "note")["outputs"] == {"message": "approved by ana"}
    assert show(af, "key-43")["run"]["status"] == "WAITING"  # the other key is untouched

    res = af("resume", "--key", "orderid::o43", "--event", "approved")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "key-43")
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "ship", "note")["outputs"] == {"message": "approved by unknown"}

    res = af("resume", "--key", "o42", "--event", "approved")  # no active run holds it now
    assert res.exit_code == 2, res.stderr
    assert "o42" in res.stderr


# ---------------------------------------------------------------------------------------------
# timers and resume --due


def timer_flow(side: Path) -> str:
    return f"""
version: 1
flow: {{id: timers}}
jobs:
  - id: j
    steps:
      - {{id: pause, type: wait, inputs: {{seconds: 1}}}}
      - id: after
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(f'echo "{{{{ run_id }}}}" >> {q(side)}; sleep 0.5')}]}}
"""


def test_wait_timer_resumed_by_due_sweep(af, write_flow, tmp_path: Path) -> None:
    side = tmp_path / "side"
    flow = write_flow(timer_flow(side))
    res = af("run", flow, "--run-id", "timer-1", env=PARK)
    assert res.exit_code == 0, res.stderr
    assert "timer" in res.stderr and "j.pause" in res.stderr
    doc = show(af, "timer-1")
    assert doc["run"]["status"] == "WAITING"
    assert [w["kind"] for w in doc["waits"]] == ["timer"]
    assert not side.exists()

    wait_until_due(af, "timer-1")
    res = af("resume", "--due", env=PARK)
    assert res.exit_code == 0, res.stderr
    doc = show(af, "timer-1", history=True)
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "j", "pause")["outcome"] == "elapsed"
    assert len(events(doc, "timer.fired")) == 1
    assert lines_of(side) == ["timer-1"]


def test_event_timeout_fires_and_skip_job_routes_it(af, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: approval_timeout}
        jobs:
          - id: approve
            steps:
              - id: wait_approval
                type: wait_for_event
                inputs: {events: [approved], timeout_seconds: 1}
                on_outcome: {timeout: skip_job}
              - {id: never, type: noop}
          - id: ship
            depends_on: [approve]
            steps:
              - {id: note, type: noop}
        """)
    res = af("run", flow, "--run-id", "tmo-1")
    assert res.exit_code == 0, res.stderr
    assert "approved" in res.stderr and "timer" in res.stderr
    wait_until_due(af, "tmo-1")
    res = af("resume", "--due")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "tmo-1", history=True)
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "approve", "wait_approval")["outcome"] == "timeout"
    assert step_doc(doc, "approve", "never")["status"] == "SKIPPED"
    assert job_doc(doc, "approve")["status"] == "SKIPPED"
    assert job_doc(doc, "ship")["status"] == "SKIPPED" and job_doc(doc, "ship")["reason"] == "upstream skipped"
    assert len(events(doc, "timer.fired")) == 1
    assert doc["waits"] == []


def test_overlapping_due_sweeps_resume_each_run_exactly_once(af, spawn, write_flow, tmp_path: Path) -> None:
    side = tmp_path / "side"
    flow = write_flow(timer_flow(side))
    ids = [f"sweep-{i}" for i in range(3)]
    for rid in ids:
        assert af("run", flow, "--run-id", rid, env=PARK).exit_code == 0
    for rid in ids:
        wait_until_due(af, rid)
    sweeps = [spawn("resume", "--due", "--json", env=PARK) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], [e for _, e in outs]
    for rid in ids:
        doc = show(af, rid, history=True)
        assert doc["run"]["status"] == "SUCCESS"
        assert len(events(doc, "run.resumed")) == 1, rid
        assert len(events(doc, "timer.fired")) == 1, rid
        assert step_doc(doc, "j", "after")["attempt"] == 1
    assert sorted(lines_of(side)) == ids  # the step after the timer ran once per run
    # between them the two sweeps resumed each run once; the other sweep skipped it
    reports = [r for out, _ in outs for r in json.loads(out)["due"]]
    resumed = [r["run_id"] for r in reports if r["status"] == "SUCCESS" and not r.get("message")]
    assert sorted(resumed) == ids, reports


def test_cancel_of_a_waiting_run(af, write_flow, tmp_path: Path) -> None:
    side = tmp_path / "side"
    flow = write_flow(timer_flow(side))
    assert af("run", flow, "--run-id", "doomed", env=PARK).exit_code == 0
    due = show(af, "doomed")["run"]["due_at"]
    res = af("cancel", "doomed", "--reason", "no longer needed")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "doomed", history=True)
    assert doc["run"]["status"] == "CANCELLED"
    assert doc["run"]["cancel_reason"] == "no longer needed"
    assert doc["waits"] == []
    cancelled = events(doc, "run.cancelled")
    assert len(cancelled) == 1 and cancelled[0]["data"]["reason"] == "no longer needed"

    assert due is not None and doc["run"]["due_at"] is None
    assert wait_for(lambda: time.time() > due + 0.05, timeout=30)  # the timer would be due now
    res = af("resume", "--due", "--json", env=PARK)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["due"] == []
    doc = show(af, "doomed", history=True)
    assert doc["run"]["status"] == "CANCELLED"
    assert events(doc, "run.resumed") == [] and events(doc, "timer.fired") == []
    assert not side.exists()

    res = af("resume", "doomed")
    assert res.exit_code == 2 and "cancel" in res.stderr, res.stderr
    res = af("resume", "doomed", "--event", "approved")
    assert res.exit_code == 2, res.stderr
    assert show(af, "doomed")["run"]["status"] == "CANCELLED"


def flaky_cmd(marker: Path, count: Path) -> str:
    return f"echo try >> {q(count)}; if [ -f {q(marker)} ]; then exit 0; fi; touch {q(marker)}; exit 1"


def test_long_retry_delay_parks_the_run_and_due_sweep_continues_it(af, write_flow, tmp_path: Path) -> None:
    count = tmp_path / "count"
    flow = write_flow(f"""
version: 1
flow: {{id: flaky}}
jobs:
  - id: j
    steps:
      - id: call
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(flaky_cmd(tmp_path / "ok", count))}]}}
        retry: {{max_attempts: 2, initial_delay_seconds: 1, jitter: false}}
      - {{id: after, type: noop}}
""")
    res = af("run", flow, "--run-id", "flaky-1", env=PARK)
    assert res.exit_code == 0, res.stderr
    assert "retry" in res.stderr and "j.call" in res.stderr
    doc = show(af, "flaky-1", history=True)
    assert doc["run"]["status"] == "WAITING"
    step = step_doc(doc, "j", "call")
    assert step["status"] == "WAITING" and step["attempt"] == 1
    assert [w["kind"] for w in doc["waits"]] == ["retry"]
    assert len(events(doc, "step.retry")) == 1
    assert [e["data"]["kind"] for e in events(doc, "step.waiting")] == ["retry"]
    assert lines_of(count) == ["try"]

    wait_until_due(af, "flaky-1")
    res = af("resume", "--due", env=PARK)
    assert res.exit_code == 0, res.stderr
    doc = show(af, "flaky-1")
    assert doc["run"]["status"] == "SUCCESS"
    step = step_doc(doc, "j", "call")
    assert step["status"] == "SUCCESS" and step["attempt"] == 2
    assert [(a["attempt"], a["status"]) for a in step["attempts"]] == [(1, "FAILED"), (2, "SUCCESS")]
    assert step_doc(doc, "j", "after")["status"] == "SUCCESS"
    assert lines_of(count) == ["try", "try"]


# ---------------------------------------------------------------------------------------------
# the events log


def test_events_log_records_the_whole_life_of_waiting_runs(af, spawn, write_flow, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    flow = write_flow(f"""
version: 1
flow: {{id: telemetry}}
jobs:
  - id: gate
    steps:
      - {{id: hold, type: wait_for_event, inputs: {{events: [go]}}}}
  - id: locked
    steps:
      - id: guarded
        type: with_lock
        inputs: {{lock_key: telemetry, step: {{type: noop}}}}
  - id: flaky
    steps:
      - id: call
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(flaky_cmd(tmp_path / "ok", tmp_path / "count"))}]}}
        retry: {{max_attempts: 2, initial_delay_seconds: 1, jitter: false}}
  - id: timer
    steps:
      - {{id: pause, type: wait, inputs: {{seconds: 1}}}}
""")
    res = af("run", flow, "--run-id", "tele-1", "--events-log", log, env=PARK)
    assert res.exit_code == 0, res.stderr
    wait_until_due(af, "tele-1")
    res = af("resume", "--due", "--events-log", log, env=PARK)
    assert res.exit_code == 0, res.stderr
    assert show(af, "tele-1")["run"]["status"] == "WAITING"  # the gate still waits for its event
    res = af("resume", "tele-1", "--event", "go", "--events-log", log, env=PARK)
    assert res.exit_code == 0, res.stderr
    assert show(af, "tele-1")["run"]["status"] == "SUCCESS"

    # a running run cancelled at its next step boundary
    started, gate = tmp_path / "started", tmp_path / "gate"
    cancel_flow = write_flow(f"""
version: 1
flow: {{id: cancellable}}
jobs:
  - id: j
    steps:
      - id: first
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(f"touch {q(started)}; i=0; while [ ! -f {q(gate)} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done")}]}}
      - {{id: second, type: noop}}
""", "cancel.yaml")
    runner = spawn("run", cancel_flow, "--run-id", "tele-2", "--events-log", log)
    assert wait_for(started.exists, timeout=60)
    res = af("cancel", "tele-2", "--reason", "stop it")
    assert res.exit_code == 0, res.stderr
    gate.touch()
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 1, err
    doc = show(af, "tele-2")
    assert doc["run"]["status"] == "CANCELLED"
    assert step_doc(doc, "j", "second")["status"] != "SUCCESS"

    records = [json.loads(line) for line in log.read_text().splitlines()]
    for r in records:
        assert r["run_id"] in ("tele-1", "tele-2") and isinstance(r["ts"], float) and r["event"]
    names = [r["event"] for r in records if r["run_id"] == "tele-1"]
    for name in ("run.started", "run.waiting", "run.resumed", "run.finished", "job.started", "job.finished",
                 "job.waiting", "step.started", "step.finished", "step.retry", "step.waiting", "event.received",
                 "timer.fired", "lock.acquired", "lock.released"):
        assert name in names, (name, sorted(set(names)))
    assert names.count("run.resumed") == 2
    assert names.count("event.received") == 1 and names.count("timer.fired") == 1

    def one(event: str, **match: str) -> dict:
        found = [r for r in records if r["event"] == event and all(r.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (event, match, found)
        return found[0]

    assert one("event.received", run_id="tele-1")["data"]["event"] == "go"
    assert one("timer.fired", run_id="tele-1")["step_id"] == "pause"
    assert one("step.retry", run_id="tele-1")["step_id"] == "call"
    assert one("lock.acquired", run_id="tele-1")["step_id"] == "guarded"
    assert one("lock.released", run_id="tele-1")["step_id"] == "guarded"
    finished = one("step.finished", run_id="tele-1", job_id="flaky")
    assert finished["attempt"] == 2 and finished["data"]["duration"] >= 0
    assert one("job.finished", run_id="tele-1", job_id="locked")["data"]["duration"] >= 0
    run_end = one("run.finished", run_id="tele-1")
    assert run_end["data"]["status"] == "SUCCESS" and run_end["data"]["duration"] >= 0
    assert one("run.cancelled", run_id="tele-2")["data"]["status"] == "CANCELLED"
    # the log and the history say the same thing
    history = [e["event"] for e in show(af, "tele-1", history=True)["history"]]
    assert sorted(set(history)) == sorted(set(names))


def test_cancel_of_a_waiting_run_reaches_the_events_log(af, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: cancel_log}
        jobs:
          - id: a
            steps:
              - {id: w, type: wait_for_event, inputs: {events: [go]}}
        """)
    log = tmp_path / "events.jsonl"
    env = {"AETHERFLOW_EVENTS_LOG": str(log)}
    res = af("run", str(flow), "--json", env=env)
    run_id = json.loads(res.stdout)["run_id"]
    assert af("cancel", run_id, "--reason", "not needed", env=env).exit_code == 0
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["event"] == "run.cancelled" and last["run_id"] == run_id
    assert last["data"] == {"reason": "not needed"}
