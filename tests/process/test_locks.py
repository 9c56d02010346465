"""Locks and admission between real processes: `with_lock` mutual exclusion under contention,
a SIGKILLed holder frees its lock, a live holder is never overtaken, `flow.locks` serializes
overlapping cron runs, business keys admit one active run, and `max_parallel_jobs`.

No timed asserts: every check is on recorded timestamps, states, exit codes and files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import q, show, step_doc

from tests.conftest import pid_alive, wait_for

# the same tests with the store selected by a PostgreSQL URL (tests/conftest.py)
pytestmark = pytest.mark.store_backends

GATE_LOOP = "i=0; while [ ! -f {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"




def finish(p: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def job_status(doc: dict, job: str) -> str:
    return next(j for j in doc["jobs"] if j["job_id"] == job)["status"]


# ---------------------------------------------------------------------------------------------
# (a) mutual exclusion under contention


def contention_flow(n_steps: int, shared: Path, lock_key: str = "shared-file") -> str:
    # the section sleeps a little so that, without the lock, sections of different processes
    # would interleave (checked by hand with a per-run lock key: many overlaps)
    section = f'echo "enter $$" >> {q(shared)}; sleep 0.02; echo "exit $$" >> {q(shared)}'
    steps = "".join(
        f"""
      - id: s{i:03d}
        type: with_lock
        inputs:
          lock_key: {json.dumps(lock_key)}
          wait_seconds: 120
          step: {{type: external.process, inputs: {{command: [sh, -c, {json.dumps(section)}]}}}}"""
        for i in range(n_steps)
    )
    return f"""
version: 1
flow: {{id: contend}}
jobs:
  - id: j
    steps:{steps}
"""


def test_with_lock_gives_mutual_exclusion_across_processes(af, spawn, write_flow, tmp_path: Path) -> None:
    procs_n, steps_n = 8, 50
    shared = tmp_path / "shared.log"
    flow = write_flow(contention_flow(steps_n, shared))
    assert af("run", flow).exit_code == 0  # creates the store; the lock file exists from now on
    shared.unlink()
    procs = [spawn("run", flow) for _ in range(procs_n)]
    results = [finish(p, timeout=240) for p in procs]
    assert [r[0] for r in results] == [0] * procs_n, [r[2] for r in results]
    lines = shared.read_text().splitlines()
    assert len(lines) == 2 * procs_n * steps_n
    assert overlaps(lines) == []


def overlaps(lines: list[str]) -> list[tuple[int, str]]:
    """Lines where a section entered while another was inside, or exited one it did not enter."""
    bad: list[tuple[int, str]] = []
    inside: str | None = None
    for n, line in enumerate(lines):
        kind, who = line.split()
        if kind == "enter":
            if inside is not None:
                bad.append((n, line))
            inside = who
        else:
            if inside != who:
                bad.append((n, line))
            inside = None
    return bad


# ---------------------------------------------------------------------------------------------
# (b) a SIGKILLed holder frees the lock


LOCK_FLOW = """
version: 1
flow: {{id: {flow_id}}}
jobs:
  - id: j
    steps:
      - id: locked
        type: with_lock
        inputs:
          lock_key: exclusive
          wait_seconds: {wait}
          step: {{type: external.process, inputs: {{command: [sh, -c, {cmd}]}}}}
"""


def lock_flow(flow_id: str, wait: float, cmd: str) -> str:
    return LOCK_FLOW.format(flow_id=flow_id, wait=wait, cmd=json.dumps(cmd))


def step_status(store, run_id: str, job: str, step: str) -> str | None:
    rec = store.steps(run_id).get((job, step))
    return rec.status if rec else None


def test_sigkilled_holder_frees_the_lock(af, spawn, write_flow, tmp_path: Path, store_of) -> None:
    marker, entered = tmp_path / "holder.pid", tmp_path / "contender.entered"
    holder_flow = write_flow(lock_flow("holder", 0, f"echo $$ > {q(marker)}.tmp; mv {q(marker)}.tmp {q(marker)}; exec sleep 300"),
                             "holder.yaml")
    contender_flow = write_flow(lock_flow("contender", 10, f"touch {q(entered)}"), "contender.yaml")
    holder = spawn("run", holder_flow, "--run-id", "holder-run")
    assert wait_for(marker.exists, timeout=60), holder.stderr
    child_pid = int(marker.read_text())

    contender = spawn("run", contender_flow, "--run-id", "contender-run")
    # the contender is inside with_lock, waiting for the lock (its step is recorded RUNNING)
    store = store_of()
    assert wait_for(lambda: step_status(store, "contender-run", "j", "locked") == "RUNNING", timeout=60)
    assert not entered.exists()
    killed_at = time.time()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)

    code, _, err = finish(contender)
    assert code == 0, err
    assert entered.exists()
    acquired = [e for e in show(af, "contender-run", history=True)["history"] if e["event"] == "lock.acquired"]
    assert len(acquired) == 1
    assert killed_at <= acquired[0]["ts"] < killed_at + 10  # freed by the kernel, not by a TTL
    # the holder's child did not outlive it, and the dead holder shows CRASHED, not RUNNING
    assert wait_for(lambda: not pid_alive(child_pid), timeout=30)
    assert show(af, "holder-run")["run"]["status"] == "CRASHED"
    locks = json.loads(af("locks", "list", "--json").stdout)["locks"]
    assert locks == []


def test_locks_list_hides_the_record_of_a_dead_holder(af, spawn, write_flow, tmp_path: Path, store_of) -> None:
    marker = tmp_path / "holder.pid"
    flow = write_flow(lock_flow("holder", 0, f"echo $$ > {q(marker)}.tmp; mv {q(marker)}.tmp {q(marker)}; exec sleep 300"))
    holder = spawn("run", flow, "--run-id", "dead-holder")
    assert wait_for(marker.exists, timeout=60)
    listed = json.loads(af("locks", "list", "--json").stdout)["locks"]
    # the run's executor lock and its with_lock lock, both held by the run
    assert sorted((lk["kind"], lk["run_id"]) for lk in listed) == [("run", "dead-holder"), ("with_lock", "dead-holder")]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert {lk.run_id for lk in store_of().locks()} == {"dead-holder"}  # the records are still there...
    assert json.loads(af("locks", "list", "--json").stdout)["locks"] == []  # ...but the lock is free
    assert af("locks", "list").stdout.strip() == "no locks held"


def test_sigterm_stops_a_with_lock_that_waits_for_its_lock(af, spawn, write_flow, tmp_path: Path, store_of) -> None:
    """A `with_lock` with `wait_seconds` waits in the step thread, so SIGTERM ends the run long
    before the wait would: exit 143, the run INTERRUPTED and resumable, the step never entered."""
    marker, entered = tmp_path / "holder.pid", tmp_path / "contender.entered"
    holder_flow = write_flow(lock_flow("holder", 0, f"echo $$ > {q(marker)}.tmp; mv {q(marker)}.tmp {q(marker)}; exec sleep 300"),
                             "holder.yaml")
    contender_flow = write_flow(lock_flow("patient", 600, f"touch {q(entered)}"), "patient.yaml")
    holder = spawn("run", holder_flow, "--run-id", "holder-run")
    try:
        assert wait_for(marker.exists, timeout=60), holder.stderr
        contender = spawn("run", contender_flow, "--run-id", "patient-run")
        store = store_of()
        assert wait_for(lambda: step_status(store, "patient-run", "j", "locked") == "RUNNING", timeout=60)
        os.kill(contender.pid, signal.SIGTERM)
        code, _, err = finish(contender, timeout=60)  # the wait itself would last 600 s
        assert code == 143, err
        assert not entered.exists()
        assert show(af, "patient-run")["run"]["status"] == "INTERRUPTED"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def test_with_lock_around_an_inline_step_records_its_holder(af, write_flow) -> None:
    """`with_lock` around `noop` (no wait, no timeout) is called in the job's thread: the lock is
    still taken and released, recorded and reported as for any other `with_lock`."""
    flow = write_flow("""
version: 1
flow: {id: quick_lock}
jobs:
  - id: j
    steps:
      - {id: a, type: with_lock, inputs: {lock_key: quick, step: {type: noop}}}
      - {id: b, type: with_lock, inputs: {lock_key: quick, steps: [{type: noop}, {type: noop}]}}
""")
    res = af("run", flow, "--run-id", "quick-run")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "quick-run", history=True)
    assert [e["event"] for e in doc["history"] if e["event"].startswith("lock.") and e.get("step_id")] == [
        "lock.acquired", "lock.released", "lock.acquired", "lock.released"]
    assert step_doc(doc, "j", "a")["outputs"]["lock_key"] == "quick"
    assert set(step_doc(doc, "j", "b")["outputs"]["steps"]) == {"0", "1"}
    assert json.loads(af("locks", "list", "--json").stdout)["locks"] == []


# ---------------------------------------------------------------------------------------------
# (c) a live holder is never overtaken


def test_live_slow_holder_is_never_overtaken(af, spawn, write_flow, tmp_path: Path) -> None:
    held, gate, trespass = tmp_path / "held", tmp_path / "release", tmp_path / "trespass"
    holder_flow = write_flow(lock_flow("slow", 0, f"touch {q(held)}; {GATE_LOOP.format(gate=q(gate))}"), "slow.yaml")
    contender_flow = write_flow(lock_flow("eager", 1, f"touch {q(trespass)}"), "eager.yaml")
    holder = spawn("run", holder_flow, "--run-id", "slow-holder")
    assert wait_for(held.exists, timeout=60)
    listed = json.loads(af("locks", "list", "--json").stdout)["locks"]
    user = [lk for lk in listed if lk["lock"] == "user:exclusive"]
    assert len(user) == 1, listed
    assert user[0]["run_id"] == "slow-holder"
    assert user[0]["pid"] == holder.pid
    assert user[0]["host"] and user[0]["kind"] == "with_lock" and user[0]["since"]

    res = af("run", contender_flow, "--run-id", "eager-run")
    assert res.exit_code == 1, res.stderr
    assert "slow-holder" in res.stderr and f"pid {holder.pid}" in res.stderr, res.stderr
    assert not trespass.exists()
    assert holder.poll() is None  # still holding: the contender gave up, it did not take over
    doc = show(af, "eager-run", history=True)
    assert doc["run"]["status"] == "FAILED"
    assert "slow-holder" in step_doc(doc, "j", "locked")["error"]
    assert [e["event"] for e in doc["history"] if e["event"].startswith("lock.")] == ["lock.busy"]

    gate.touch()
    code, _, err = finish(holder)
    assert code == 0, err
    assert show(af, "slow-holder")["run"]["status"] == "SUCCESS"
    assert json.loads(af("locks", "list", "--json").stdout)["locks"] == []


# ---------------------------------------------------------------------------------------------
# (d) flow.locks: overlapping cron runs


def flow_lock_flow(wait: float, started: Path, gate: Path) -> str:
    cmd = f"echo $$ >> {q(started)}; {GATE_LOOP.format(gate=q(gate))}"
    return f"""
version: 1
flow:
  id: nightly
  locks: {{scope: flow, wait_seconds: {wait}}}
jobs:
  - id: j
    steps:
      - id: work
        type: external.process
        inputs: {{command: [sh, -c, {json.dumps(cmd)}]}}
"""


def test_flow_lock_second_cron_run_exits_3_at_once(af, spawn, write_flow, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    flow = write_flow(flow_lock_flow(0, started, gate))
    first = spawn("run", flow, "--run-id", "first-run")
    assert wait_for(started.exists, timeout=60)
    res = af("run", flow, "--run-id", "second-run")
    assert res.exit_code == 3, res.stderr
    assert first.poll() is None  # the second did not wait for the first to finish
    lines = [ln for ln in res.stderr.splitlines() if "first-run" in ln]
    assert lines and "nightly" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert len(started.read_text().split()) == 1  # the second run's step never started
    assert af("runs", "show", "second-run").exit_code == 2  # nothing was recorded for it
    gate.touch()
    code, _, err = finish(first)
    assert code == 0, err


def test_flow_lock_with_wait_seconds_waits_then_succeeds(af, spawn, write_flow, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    flow = write_flow(flow_lock_flow(30, started, gate))
    first = spawn("run", flow, "--run-id", "first-run")
    assert wait_for(started.exists, timeout=60)
    second = spawn("run", flow, "--run-id", "second-run")
    # the second process is alive and waiting for the flow lock; its step has not started
    for _ in range(20):
        time.sleep(0.05)
        assert second.poll() is None
    assert len(started.read_text().split()) == 1
    gate.touch()
    assert finish(first)[0] == 0
    code, _, err = finish(second)
    assert code == 0, err
    a, b = show(af, "first-run"), show(af, "second-run")
    assert a["run"]["status"] == b["run"]["status"] == "SUCCESS"
    assert step_doc(b, "j", "work")["started_at"] >= step_doc(a, "j", "work")["finished_at"]
    assert len(started.read_text().split()) == 2


def test_waiting_run_releases_the_flow_lock(af, write_flow, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    flow = write_flow("""
        version: 1
        flow:
          id: gated
          locks: {scope: flow}
        jobs:
          - id: j
            steps:
              - {id: hold, type: wait_for_event, inputs: {events: [go]}}
        """)
    assert af("run", flow, "--run-id", "gated-1", "--events-log", log).exit_code == 0
    assert json.loads(af("locks", "list", "--json").stdout)["locks"] == []
    res = af("run", flow, "--run-id", "gated-2")  # the WAITING run holds no lock
    assert res.exit_code == 0, res.stderr
    assert af("resume", "gated-1", "--event", "go", "--events-log", log).exit_code == 0
    assert show(af, "gated-1")["run"]["status"] == "SUCCESS"
    # flow lock events reach the events log as well as the history, once per process
    records = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [(r["event"], r["data"]["lock"]) for r in records if r["event"].startswith("lock.")]
    assert logged == [("lock.acquired", "flow:gated"), ("lock.released", "flow:gated")] * 2
    history = [e["event"] for e in show(af, "gated-1", history=True)["history"] if e["event"].startswith("lock.")]
    assert history == ["lock.acquired", "lock.released"] * 2


def test_resume_of_a_waiting_run_while_the_flow_lock_is_held_leaves_it_waiting(af, spawn, write_flow, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    cmd = f"touch {q(started)}; {GATE_LOOP.format(gate=q(gate))}"
    flow = write_flow(f"""
version: 1
flow:
  id: cron_flow
  locks: {{scope: flow}}
  params:
    mode: {{type: string, default: wait}}
jobs:
  - id: waits
    when: "params.mode == 'wait'"
    steps:
      - {{id: pause, type: wait, inputs: {{seconds: 1}}}}
      - {{id: approval, type: wait_for_event, inputs: {{events: [go]}}}}
  - id: busy
    when: "params.mode == 'busy'"
    steps:
      - {{id: work, type: external.process, inputs: {{command: [sh, -c, {json.dumps(cmd)}]}}}}
""")
    park = {"AETHERFLOW_INLINE_WAIT_MAX": "0"}
    assert af("run", flow, "--run-id", "parked", env=park).exit_code == 0
    due = show(af, "parked")["run"]["due_at"]
    busy = spawn("run", flow, "--run-id", "busy-run", "--param", "mode=busy", env=park)
    assert wait_for(started.exists, timeout=60)
    assert wait_for(lambda: time.time() > due + 0.05, timeout=30)
    res = af("resume", "--due", "--json", env=park)
    assert res.exit_code == 0, res.stderr
    [report] = json.loads(res.stdout)["due"]
    assert report["run_id"] == "parked" and report["status"] == "SKIPPED" and "busy-run" in report["message"]
    doc = show(af, "parked", history=True)
    assert doc["run"]["status"] == "WAITING"  # not claimed and abandoned (it would show CRASHED)
    assert [e["event"] for e in doc["history"]].count("run.resumed") == 0
    gate.touch()
    assert finish(busy)[0] == 0

    res = af("resume", "--due", env=park)  # the next sweep resumes it
    assert res.exit_code == 0, res.stderr
    doc = show(af, "parked")
    assert doc["run"]["status"] == "WAITING"
    assert step_doc(doc, "waits", "pause")["outcome"] == "elapsed"
    assert [w["events"] for w in doc["waits"]] == [["go"]]

    # an event while another run holds the flow lock (SPEC 7: the event is stored durably first):
    # exit 3, the event is kept, the run stays WAITING and is due, and the next sweep delivers it
    started.unlink()
    gate.unlink()
    busy = spawn("run", flow, "--run-id", "busy-run-2", "--param", "mode=busy", env=park)
    assert wait_for(started.exists, timeout=60)
    res = af("resume", "parked", "--event", "go")
    assert res.exit_code == 3, res.stderr
    assert "busy-run-2" in res.stderr and "event 'go' is stored" in res.stderr
    doc = show(af, "parked", history=True)
    assert doc["run"]["status"] == "WAITING" and doc["run"]["due_at"] is not None
    assert [e["event"] for e in doc["history"]].count("event.received") == 1
    gate.touch()
    assert finish(busy)[0] == 0
    res = af("resume", "--due", env=park)
    assert res.exit_code == 0, res.stderr
    doc = show(af, "parked")
    assert doc["run"]["status"] == "SUCCESS"
    assert step_doc(doc, "waits", "approval")["outcome"] == "go"


def test_job_lock_not_acquired_fails_the_job_and_independent_jobs_go_on(af, spawn, write_flow, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    cmd = f"touch {q(started)}; {GATE_LOOP.format(gate=q(gate))}"
    flow = write_flow(f"""
version: 1
flow:
  id: per_job
  locks: {{scope: job, wait_seconds: 0}}
jobs:
  - id: load
    steps:
      - {{id: copy, type: external.process, inputs: {{command: [sh, -c, {json.dumps(cmd)}]}}}}
  - id: other
    steps:
      - {{id: s, type: noop}}
""")
    first = spawn("run", flow, "--run-id", "job-lock-1", "--job", "load")
    assert wait_for(started.exists, timeout=60)
    res = af("run", flow, "--run-id", "job-lock-2")
    assert res.exit_code == 1, res.stderr  # a failed job, not a conflict: the run was started
    assert "job-lock-1" in res.stderr and "load.copy" in res.stderr, res.stderr
    doc = show(af, "job-lock-2", history=True)
    assert doc["run"]["status"] == "FAILED"  # recorded, not left RUNNING (CRASHED)
    load = next(j for j in doc["jobs"] if j["job_id"] == "load")
    assert load["status"] == "FAILED" and "job-lock-1" in load["reason"]
    assert "job-lock-1" in step_doc(doc, "load", "copy")["error"]
    assert job_status(doc, "other") == "SUCCESS"
    assert [e["event"] for e in doc["history"] if e.get("job_id") == "load"][:1] == ["lock.busy"]
    gate.touch()
    assert finish(first)[0] == 0
    res = af("resume", "job-lock-2")
    assert res.exit_code == 0, res.stderr
    assert show(af, "job-lock-2")["run"]["status"] == "SUCCESS"


# ---------------------------------------------------------------------------------------------
# (e) business keys under concurrent admission


KEY_FLOW = """
version: 1
flow:
  id: order_approval
  unique: {key: orderid, scope: flow}
jobs:
  - id: approve
    steps:
      - id: wait_approval
        type: wait_for_event
        inputs: {events: [approved, rejected]}
"""


def test_concurrent_key_admission_admits_exactly_one(af, spawn, write_flow) -> None:
    flow = write_flow(KEY_FLOW)
    procs = [spawn("run", flow, "--key", "k1") for _ in range(6)]
    results = [finish(p) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 3, 3, 3, 3, 3], [r[2] for r in results]
    active = json.loads(af("runs", "list", "--key", "k1", "--json").stdout)["runs"]
    assert [r["status"] for r in active] == ["WAITING"]
    holder = active[0]["run_id"]
    assert active[0]["business_key"] == "orderid::k1"
    for code, _, err in results:
        if code == 3:
            assert holder in err and "orderid::k1" in err, err
            assert "Traceback" not in err
    # a different key is admitted
    other = af("run", flow, "--key", "k2")
    assert other.exit_code == 0, other.stderr
    # the key is free again once the holder is cancelled
    assert af("cancel", holder, "--reason", "test").exit_code == 0
    again = af("run", flow, "--key", "orderid::k1", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "WAITING"
    runs = json.loads(af("runs", "list", "--key", "k1", "--json").stdout)["runs"]
    assert sorted(r["status"] for r in runs) == ["CANCELLED", "WAITING"]


# ---------------------------------------------------------------------------------------------
# (f) max_parallel_jobs


def parallel_flow(limit: int, fail: bool = False) -> str:
    bad = '\n  - id: bad\n    steps:\n      - {id: s, type: external.process, inputs: {command: [sh, -c, "exit 7"]}}' if fail else ""
    return f"""
version: 1
flow: {{id: par, max_parallel_jobs: {limit}}}
jobs:{bad}
  - id: a
    steps:
      - {{id: s, type: external.process, inputs: {{command: [sleep, "1"]}}}}
  - id: b
    steps:
      - {{id: s, type: external.process, inputs: {{command: [sleep, "1"]}}}}
  - id: c
    steps:
      - {{id: s, type: external.process, inputs: {{command: [sleep, "1"]}}}}
  - id: after_a
    depends_on: [a]
    steps:
      - {{id: s, type: noop}}
"""


def intervals(doc: dict, jobs: list[str]) -> list[tuple[float, float]]:
    out = []
    for j in jobs:
        s = step_doc(doc, j, "s")
        assert s["status"] == "SUCCESS", s
        out.append((s["started_at"], s["finished_at"]))
    return out


def test_parallel_jobs_overlap(af, write_flow) -> None:
    flow = write_flow(parallel_flow(3))
    res = af("run", flow, "--run-id", "par3")
    assert res.exit_code == 0, res.stderr
    doc = show(af, "par3")
    spans = intervals(doc, ["a", "b", "c"])
    assert max(s for s, _ in spans) < min(f for _, f in spans)  # all three ran at the same time
    after = step_doc(doc, "after_a", "s")
    assert after["started_at"] >= step_doc(doc, "a", "s")["finished_at"]


def test_one_parallel_job_runs_one_at_a_time(af, write_flow) -> None:
    flow = write_flow(parallel_flow(1))
    assert af("run", flow, "--run-id", "par1").exit_code == 0
    doc = show(af, "par1")
    spans = sorted(intervals(doc, ["a", "b", "c", "after_a"]))
    for (_, f1), (s2, _) in zip(spans, spans[1:], strict=False):
        assert f1 <= s2
    after = step_doc(doc, "after_a", "s")
    assert after["started_at"] >= step_doc(doc, "a", "s")["finished_at"]


def test_failed_parallel_job_does_not_stop_independent_jobs(af, write_flow) -> None:
    flow = write_flow(parallel_flow(3, fail=True))
    res = af("run", flow, "--run-id", "parfail")
    assert res.exit_code == 1, res.stderr
    doc = show(af, "parfail")
    assert doc["run"]["status"] == "FAILED"
    assert job_status(doc, "bad") == "FAILED"
    assert [job_status(doc, j) for j in ("a", "b", "c", "after_a")] == ["SUCCESS"] * 4
    assert "bad.s" in res.stderr
