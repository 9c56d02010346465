"""The state store contract (``aetherflow/state/store.py``), one suite for every backend
(``tests/state/conftest.py``): what the engine and the commands rely on, through the protocol
only. A new backend is ready when it passes this file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from support import wait_until

from aetherflow.errors import ConflictError, KeyInUseError, StateError
from aetherflow.events import Event
from aetherflow.model import freeze
from aetherflow.state.store import (
    LockRecord,
    OutputChunk,
    ReceivedEvent,
    RunRecord,
    StateStore,
    StepWrite,
    WaitRecord,
    run_lock_key,
    shown_status,
)

Stores = Callable[..., StateStore]


def run_rec(run_id: str = "r1", *, flow_id: str = "f", created: float = 100.0, key: str | None = None,
            scope: str | None = None, status: str = "RUNNING", **kw: object) -> RunRecord:
    return RunRecord(run_id=run_id, flow_id=flow_id, flow_file="/flows/f.yaml", flow_sha256="ab" * 32,
                     flow_text="version: 1\n", params=freeze({"date": "2026-12-07"}), business_key=key,
                     key_scope=scope, status=status, pid=123, host="h1", created_at=created, started_at=created,
                     **kw)  # type: ignore[arg-type]


def ev(name: str, run_id: str = "r1", **data: object) -> Event:
    return Event(name=name, run_id=run_id, ts=1.0, flow_id="f", data=freeze(data))


# runs -------------------------------------------------------------------------------------------


def test_create_and_read_a_run(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(plugin_paths=("/p",), selected_jobs=("a",), workspace_root="/w", profile="prod"), ev("run.started"))
    got = s.get_run("r1")
    assert got is not None
    assert (got.flow_id, got.status, got.pid, got.host, got.attempt) == ("f", "RUNNING", 123, "h1", 1)
    assert dict(got.params) == {"date": "2026-12-07"}
    assert (got.plugin_paths, got.selected_jobs, got.workspace_root, got.profile) == (("/p",), ("a",), "/w", "prod")
    assert got.flow_text == "version: 1\n"
    assert s.get_run("nope") is None
    assert [e.name for e in s.history("r1")] == ["run.started"]


def test_another_client_sees_a_committed_run(stores: Stores) -> None:
    a, b = stores(), stores()
    a.create_run(run_rec(), ev("run.started"))
    assert b.get_run("r1") is not None


def test_list_find_and_ids_newest_first(stores: Stores) -> None:
    s = stores()
    for i, (rid, flow, status) in enumerate([("a1", "f", "SUCCESS"), ("a2", "g", "FAILED"), ("b1", "f", "WAITING")]):
        s.create_run(run_rec(rid, flow_id=flow, created=100.0 + i, status=status), ev("run.started", rid))
    assert [r.run_id for r in s.list_runs()] == ["b1", "a2", "a1"]
    assert [r.run_id for r in s.list_runs(flow_id="f")] == ["b1", "a1"]
    assert [r.run_id for r in s.list_runs(status="FAILED")] == ["a2"]
    assert [r.run_id for r in s.list_runs(limit=1)] == ["b1"]
    assert sorted(r.run_id for r in s.find_runs("a")) == ["a1", "a2"]
    assert s.run_ids("a") == ["a2", "a1"]
    assert s.run_ids("%") == [] and s.run_ids("_1") == []  # the prefix is literal


def test_update_run_and_cancel_reason(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    assert s.cancel_reason("r1") is None
    s.update_run("r1", ev("run.cancel_requested"), cancel_reason="bad input")
    s.update_run("r1", None, status="FAILED", error="j.s: boom", finished_at=200.0, due_at=None)
    got = s.get_run("r1")
    assert got is not None and (got.status, got.error, got.finished_at) == ("FAILED", "j.s: boom", 200.0)
    assert s.cancel_reason("r1") == "bad input"
    assert [e.name for e in s.history("r1")] == ["run.started", "run.cancel_requested"]


def test_claim_run_is_atomic_and_fails_leftover_running_steps(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(status="FAILED"), ev("run.started"))
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="RUNNING", attempt=1, started_at=1.0), None)
    results: list[bool] = []
    clients = [stores() for _ in range(4)]
    barrier = threading.Barrier(len(clients))

    def claim(c: StateStore) -> None:
        barrier.wait()
        results.append(c.claim_run("r1", "FAILED", os.getpid(), "h2", ev("run.resumed")))

    threads = [threading.Thread(target=claim, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    got = s.get_run("r1")
    assert got is not None and (got.status, got.attempt, got.host) == ("RUNNING", 2, "h2")
    step = s.steps("r1")[("j", "s")]
    assert step.status == "FAILED" and step.error
    assert [a.status for a in s.attempts("r1")] == ["FAILED"]


def test_business_key_admission(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec("r1", key="order::42", scope="f"), ev("run.started"))
    with pytest.raises(KeyInUseError) as info:
        stores().create_run(run_rec("r2", key="order::42", scope="f"), ev("run.started", "r2"))
    assert getattr(info.value, "holder", None) == "r1"
    assert stores().get_run("r2") is None  # nothing half-written
    s.create_run(run_rec("r3", key="order::42", scope="other_flow", created=101.0), ev("run.started", "r3"))  # another scope
    assert [r.run_id for r in s.runs_for_key("order::42", active_only=True)] == ["r3", "r1"]
    s.update_run("r1", None, status="SUCCESS")
    s.update_run("r3", None, status="SUCCESS")
    assert s.runs_for_key("order::42", active_only=True) == []
    s.create_run(run_rec("r4", key="order::42", scope="f", created=102.0), ev("run.started", "r4"))  # free again
    assert [r.run_id for r in s.list_runs(key="42")] == ["r4", "r3", "r1"]
    assert [r.run_id for r in s.runs_for_key("42")] == ["r4", "r3", "r1"]


def test_a_global_key_conflicts_with_every_holder_of_that_key(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec("a", flow_id="f", key="order::7", scope="f"), ev("run.started", "a"))
    with pytest.raises(KeyInUseError) as info:  # global, while a flow-scoped run of another flow holds it
        stores().create_run(run_rec("g", flow_id="g", key="order::7", scope="*"), ev("run.started", "g"))
    assert getattr(info.value, "holder", None) == "a" and s.get_run("g") is None
    s.update_run("a", None, status="FAILED")
    s.create_run(run_rec("g", flow_id="g", key="order::7", scope="*"), ev("run.started", "g"))
    with pytest.raises(KeyInUseError) as info:  # flow-scoped, while a global run holds it
        stores().create_run(run_rec("b", flow_id="h", key="order::7", scope="h"), ev("run.started", "b"))
    assert getattr(info.value, "holder", None) == "g" and s.get_run("b") is None
    s.create_run(run_rec("c", flow_id="h", key="order::8", scope="h"), ev("run.started", "c"))  # another key


def test_global_key_admission_is_atomic(stores: Stores) -> None:
    admitted: list[str] = []
    clients = [stores() for _ in range(4)]
    barrier = threading.Barrier(len(clients))

    def start(i: int, c: StateStore) -> None:
        barrier.wait()
        try:  # two flow-scoped runs of different flows and two global ones, all at once
            c.create_run(run_rec(f"r{i}", flow_id=f"f{i % 2}", key="order::9", scope="*" if i >= 2 else f"f{i % 2}"),
                         ev("run.started", f"r{i}"))
            admitted.append(f"r{i}")
        except KeyInUseError:
            pass

    threads = [threading.Thread(target=start, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = stores().runs_for_key("order::9", active_only=True)
    assert sorted(r.run_id for r in held) == sorted(admitted)
    # either one global run, or flow-scoped runs of distinct flows (at most one each)
    assert len(admitted) == 1 or (sorted(r.key_scope or "" for r in held) == ["f0", "f1"])


def test_key_lookups_are_exact_and_complete(stores: Stores) -> None:
    s = stores()
    for i in range(30):  # many finished runs of the same key, newer than the active one
        s.create_run(run_rec(f"old{i:02d}", key="order::5", scope="f", created=200.0 + i, status="SUCCESS"),
                     ev("run.started", f"old{i:02d}"))
    s.create_run(run_rec("active", key="order::5", scope="f", created=100.0, status="WAITING"), ev("run.started", "active"))
    s.create_run(run_rec("other", flow_id="g", key="ticket::5", scope="g", created=150.0, status="WAITING"),
                 ev("run.started", "other"))
    s.create_run(run_rec("near", key="order::55", scope="f", created=160.0, status="WAITING"), ev("run.started", "near"))
    s.create_run(run_rec("pct", key="order::5%", scope="f", created=170.0, status="WAITING"), ev("run.started", "pct"))
    assert [r.run_id for r in s.runs_for_key("5", active_only=True)] == ["other", "active"]
    assert [r.run_id for r in s.runs_for_key("order::5", active_only=True)] == ["active"]
    assert [r.run_id for r in s.runs_for_key("5", active_only=True, flow_id="g")] == ["other"]
    assert [r.run_id for r in s.runs_for_key("5%", active_only=True)] == ["pct"]  # no wildcards
    assert len(s.runs_for_key("order::5")) == 31 and s.runs_for_key("order::6") == []
    assert [r.run_id for r in s.list_runs(key="ticket::5")] == ["other"]


def test_labels_tags_and_metadata_of_a_run(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec("a", tags=("sales", "daily"), flow_metadata=freeze({"team": "ops", "tier": 1}),
                         meta=freeze({"ticket": "T-1"}), flow_version=3), ev("run.started", "a"))
    s.create_run(run_rec("b", created=101.0, tags=("sales",)), ev("run.started", "b"))
    s.create_run(run_rec("c", created=102.0), ev("run.started", "c"))
    got = stores().get_run("a")
    assert got is not None
    assert (got.tags, dict(got.flow_metadata), dict(got.meta), got.flow_version) == (
        ("sales", "daily"), {"team": "ops", "tier": 1}, {"ticket": "T-1"}, 3)
    assert [r.run_id for r in s.list_runs(tags=["sales"])] == ["b", "a"]
    assert [r.run_id for r in s.list_runs(tags=["sales", "daily"])] == ["a"]
    assert [r.run_id for r in s.list_runs(tags=["sal"])] == []
    assert [r.tags for r in s.list_runs()] == [(), ("sales",), ("sales", "daily")]
    s.delete_runs(["a"])
    assert [r.run_id for r in s.list_runs(tags=["daily"])] == []


def test_step_metadata_is_kept_and_merged_into_the_run(stores: Stores) -> None:
    s = stores()
    s.set_mask(lambda text: text.replace("s3cret", "***"))
    s.create_run(run_rec(), ev("run.started"))
    s.set_step("r1", StepWrite(job_id="j", step_id="a", status="SUCCESS", attempt=1, metadata={"order": 42, "region": "eu"}),
               None)
    s.set_step("r1", StepWrite(job_id="j", step_id="b", status="SUCCESS", attempt=1,
                               metadata={"region": "us", "token": "s3cret"}), None, sync=False)
    s.sync()
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("go",), created_at=1.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1, metadata={"waiting_for": "go"}), None)
    s.set_step("r1", StepWrite(job_id="j", step_id="c", status="RUNNING", attempt=1), None)
    reader = stores()
    steps = reader.steps("r1")
    assert dict(steps[("j", "a")].metadata) == {"order": 42, "region": "eu"}
    assert dict(steps[("j", "b")].metadata) == {"region": "us", "token": "***"}
    assert dict(steps[("j", "c")].metadata) == {}
    got = reader.get_run("r1")
    assert got is not None
    assert dict(got.runtime_metadata) == {"order": 42, "region": "us", "token": "***", "waiting_for": "go"}
    assert dict(reader.list_runs()[0].runtime_metadata) == dict(got.runtime_metadata)


def test_reschedule_a_waiting_run(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(status="RUNNING"), ev("run.started"))
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("go",), created_at=1.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1), None)
    s.set_wait(WaitRecord(run_id="r1", job_id="k", step_id="t", kind="timer", due_at=9000.0, created_at=1.0),
               StepWrite(job_id="k", step_id="t", status="WAITING", attempt=1), None)
    assert not s.reschedule_run("r1", 500.0, ev("run.scheduled"))  # not WAITING yet: nothing changes
    assert [w.due_at for w in s.waits("r1")] == [None, 9000.0]
    s.update_run("r1", None, status="WAITING", due_at=9000.0)
    assert s.due_runs(600.0) == []
    assert stores().reschedule_run("r1", 500.0, ev("run.scheduled", due_at=500.0))
    assert [w.due_at for w in s.waits("r1")] == [500.0, 500.0]
    assert [r.run_id for r in s.due_runs(600.0)] == ["r1"] and s.due_runs(400.0) == []
    assert [e.name for e in s.history("r1")] == ["run.started", "run.scheduled"]


def test_delete_runs_removes_every_row(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    s.create_run(run_rec("keep"), ev("run.started", "keep"))
    s.set_job("r1", "j", "SUCCESS", None, outputs={"n": 1})
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=1), None)
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("go",), created_at=1.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1), None)
    s.add_event(ReceivedEvent(id=0, run_id="r1", job_id="j", step_id="w", name="go", received_at=1.0), None)
    s.delete_runs(["r1"])
    assert s.get_run("r1") is None
    assert (s.jobs("r1"), s.steps("r1"), s.attempts("r1"), s.waits("r1"), s.pending_events("r1"), s.history("r1")) == (
        {}, {}, [], [], [], [])
    assert s.get_run("keep") is not None and len(s.history("keep")) == 1


def test_a_superseded_executor_can_no_longer_write(stores: Stores) -> None:
    """Fencing: a claim takes the run's next generation; every write of the executor it
    superseded (a process that lost its connection, say) is refused and leaves nothing."""
    a, b = stores(), stores()
    a.create_run(run_rec(), ev("run.started"))  # a executes the run
    a.set_step("r1", StepWrite(job_id="j", step_id="s", status="RUNNING", attempt=1, started_at=1.0), ev("step.started"))
    assert b.claim_run("r1", "RUNNING", 456, "h2", ev("run.resumed"))  # b takes it over
    late = StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=1, outputs={"n": 1}, finished_at=2.0)
    refused: list[Callable[[], object]] = [
        lambda: a.set_step("r1", late, ev("step.finished")),
        lambda: a.set_step("r1", late, None, sync=False),
        lambda: a.set_steps("r1", [late], None),
        lambda: a.set_job("r1", "j", "SUCCESS", ev("job.finished"), outputs={"n": 1}),
        lambda: a.set_job("r1", "j", "FAILED", None, reason="x"),
        lambda: a.update_run("r1", ev("run.finished"), status="SUCCESS", finished_at=3.0),
        lambda: a.update_run("r1", None, error="late"),
        lambda: a.append_history(ev("late")),
        lambda: a.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="s", kind="timer", due_at=9.0, created_at=2.0),
                           StepWrite(job_id="j", step_id="s", status="WAITING", attempt=1), None),
        lambda: a.record_lock(LockRecord(name="user:k", run_id="r1", pid=123, host="h1", since=2.0, kind="with_lock"), None),
        lambda: a.clear_waits("r1", None),
        lambda: a.append_output("r1", [OutputChunk(run_id="r1", job_id="j", step_id="s", attempt=1, stream="stdout",
                                                   text="late\n", at=2.0)]),
    ]
    for write in refused:
        with pytest.raises(StateError) as info:
            write()
        assert info.value.code == "state.fenced", info.value
    got = b.get_run("r1")
    assert got is not None and (got.status, got.host, got.attempt, got.error) == ("RUNNING", "h2", 2, None)
    assert b.steps("r1")[("j", "s")].status == "FAILED"  # the claim failed what was left RUNNING
    assert b.jobs("r1") == {} and b.waits("r1") == [] and b.locks() == [] and b.output("r1") == []
    assert [e.name for e in b.history("r1")] == ["run.started", "step.started", "run.resumed"]
    # the new executor writes; a process that does not execute the run (cancel) is not fenced
    b.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=2, finished_at=4.0), ev("step.finished"))
    stores().update_run("r1", ev("run.cancel_requested"), cancel_reason="stop")
    assert b.steps("r1")[("j", "s")].status == "SUCCESS" and b.cancel_reason("r1") == "stop"


def test_a_run_dumped_and_loaded_keeps_every_row(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(status="WAITING", key="order::1", scope="f", plugin_paths=("/p",), due_at=50.0,
                         tags=("sales",), flow_metadata=freeze({"team": "ops"}), meta=freeze({"ticket": "T-9"})),
                 ev("run.started", n=1))
    s.set_job("r1", "j", "WAITING", ev("job.waiting"), started_at=1.0, outputs={"o": [1, 2]})
    s.set_step("r1", StepWrite(job_id="j", step_id="a", status="FAILED", attempt=1, error="boom", started_at=1.0,
                               finished_at=2.0), ev("step.failed"))
    s.set_step("r1", StepWrite(job_id="j", step_id="a", status="SUCCESS", attempt=2, outcome="success",
                               outputs={"rows": 3, "token": "***"}, masked_keys=("token",), started_at=3.0, finished_at=4.0,
                               metadata={"region": "eu"}),
               ev("step.finished"))
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("go",), due_at=50.0, created_at=5.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1, reason="event go", started_at=5.0),
               ev("step.waiting"))
    used = s.add_event(ReceivedEvent(id=0, run_id="r1", job_id="j", step_id="w", name="go", data=freeze({"by": "a"}),
                                     received_at=6.0), ev("event.received"))
    s.consume_event(used)
    s.add_event(ReceivedEvent(id=0, run_id="r1", job_id="j", step_id="w", name="go", data=freeze({"by": "b"}),
                              received_at=7.0), None)
    s.append_output("r1", [OutputChunk(run_id="r1", job_id="j", step_id="a", attempt=n, stream=stream, text=f"{n} {stream}\n",
                                       at=3.0) for n in (1, 2) for stream in ("stdout", "stderr")])
    assert s.mark_notified("r1", "crashed", None)
    dump = s.dump_run("r1")
    assert dump is not None and s.dump_run("nope") is None
    assert [(e.name, e.consumed) for e in dump.events] == [("go", True), ("go", False)]
    assert [e.name for e in dump.history] == ["run.started", "job.waiting", "step.failed", "step.finished",
                                              "step.waiting", "event.received"]
    with pytest.raises(ConflictError) as info:
        stores().load_run(dump)
    assert info.value.code == "store.run_exists"
    s.delete_runs(["r1"])
    other = stores()
    other.set_mask(lambda text: text.replace("boom", "MASKED"))  # rows are loaded as they are
    other.load_run(dump)
    again = stores().dump_run("r1")
    assert again is not None

    def without_ids(d: object) -> object:
        return replace(d, events=tuple(replace(e, id=0) for e in d.events),  # type: ignore[type-var,attr-defined]
                       output=tuple(replace(c, seq=0) for c in d.output))  # type: ignore[attr-defined]

    assert without_ids(again) == without_ids(dump)
    assert [e.id for e in stores().pending_events("r1")] == [again.events[1].id]
    assert dict(again.run.runtime_metadata) == {"region": "eu"} and again.run.tags == ("sales",)
    assert [r.run_id for r in other.list_runs(tags=["sales"])] == ["r1"]  # found by tag and by key in the new store
    assert [r.run_id for r in other.runs_for_key("1", active_only=True)] == ["r1"]
    assert [c.text for c in other.output("r1", attempt=2)] == ["2 stdout\n", "2 stderr\n"]
    assert not other.mark_notified("r1", "crashed", None)  # a notice sent from the old store is not sent again


def test_delete_runs_leaves_a_run_whose_executor_lock_is_held(stores: Stores) -> None:
    s, other = stores(), stores()
    for rid in ("live", "done"):
        s.create_run(run_rec(rid, status="FAILED"), ev("run.started", rid))
    held = other.lock(run_lock_key("live"))
    assert held.acquire(0)
    try:
        assert s.delete_runs(["live", "done", "unknown"]) == ["done"]
        assert s.get_run("live") is not None and s.get_run("done") is None
    finally:
        held.release()
    assert s.delete_runs(["live"]) == ["live"]
    assert s.get_run("live") is None
    assert s.lock_is_free(run_lock_key("live"))  # asking about a pruned run's lock still works


def test_delete_runs_finished_before_takes_only_finished_runs_older_than_the_cut(stores: Stores) -> None:
    s = stores()
    for rid, status, finished in [("old_ok", "SUCCESS", 10.0), ("old_to", "TIMED_OUT", 10.0), ("new_ok", "SUCCESS", 500.0),
                                  ("waits", "WAITING", None), ("runs", "RUNNING", None)]:
        s.create_run(run_rec(rid, status=status, created=5.0), ev("run.started", rid))
        if finished is not None:
            s.update_run(rid, None, finished_at=finished)
    assert sorted(s.delete_runs(["old_ok", "old_to", "new_ok", "waits", "runs"], finished_before=100.0)) == ["old_ok", "old_to"]
    assert sorted(r.run_id for r in s.list_runs()) == ["new_ok", "runs", "waits"]


def test_delete_runs_removes_output_and_notices(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    s.append_output("r1", [OutputChunk(run_id="r1", job_id="j", step_id="s", attempt=1, stream="stdout", text="hi\n", at=1.0)])
    assert s.mark_notified("r1", "crashed", None)
    assert s.delete_runs(["r1"]) == ["r1"]
    assert s.output("r1") == []
    s.create_run(run_rec(), ev("run.started"))  # the same id again: nothing of the old run is left
    assert s.output("r1") == [] and s.mark_notified("r1", "crashed", None)


# captured output and notices -------------------------------------------------------------------


def chunk(job: str, step: str, attempt: int, stream: str, text: str) -> OutputChunk:
    return OutputChunk(run_id="r1", job_id=job, step_id=step, attempt=attempt, stream=stream, text=text, at=2.0)


def test_output_is_kept_in_order_masked_and_narrowed(stores: Stores) -> None:
    s = stores()
    s.set_mask(lambda text: text.replace("s3cret", "***"))
    s.create_run(run_rec(), ev("run.started"))
    s.append_output("r1", [chunk("j", "a", 1, "stdout", "one\n"), chunk("j", "a", 1, "stderr", "pw s3cret\n")])
    s.append_output("r1", [chunk("j", "a", 2, "stdout", "two\n"), chunk("k", "b", 1, "stdout", "three\n")])
    s.append_output("r1", [])
    reader = stores()  # another client sees it
    got = reader.output("r1")
    assert [(c.job_id, c.step_id, c.attempt, c.stream, c.text) for c in got] == [
        ("j", "a", 1, "stdout", "one\n"), ("j", "a", 1, "stderr", "pw ***\n"), ("j", "a", 2, "stdout", "two\n"),
        ("k", "b", 1, "stdout", "three\n")]
    seqs = [c.seq for c in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and got[0].at == 2.0
    assert [c.text for c in reader.output("r1", job_id="j", step_id="a", attempt=2)] == ["two\n"]
    assert [c.text for c in reader.output("r1", job_id="k")] == ["three\n"]
    assert [c.text for c in reader.output("r1", after=seqs[1])] == ["two\n", "three\n"]
    assert [c.text for c in reader.output("r1", after=seqs[1], limit=1)] == ["two\n"]
    assert reader.output("other") == []


def test_a_notification_is_marked_once_across_clients(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    clients = [stores() for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    won: list[bool] = []

    def mark(c: StateStore) -> None:
        barrier.wait()
        won.append(c.mark_notified("r1", "crashed", ev("notify.sent", event="crashed")))

    threads = [threading.Thread(target=mark, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(won) == [False, False, False, True]
    assert [e.name for e in s.history("r1")] == ["run.started", "notify.sent"]
    assert s.mark_notified("r1", "other", None)


def test_flow_summaries(stores: Stores) -> None:
    s = stores()
    runs = [("a1", "a", "SUCCESS", 10.0, 20.0), ("a2", "a", "FAILED", 30.0, 35.0), ("a3", "a", "SUCCESS", 40.0, 50.0),
            ("a4", "a", "RUNNING", 60.0, None), ("b1", "b", "FAILED", 5.0, 6.0)]
    for rid, flow, status, created, finished in runs:
        s.create_run(run_rec(rid, flow_id=flow, status=status, created=created), ev("run.started", rid))
        if finished is not None:
            s.update_run(rid, None, finished_at=finished)
    for rid, attempt, status in [("a2", 1, "FAILED"), ("a2", 2, "FAILED"), ("a3", 1, "SUCCESS"), ("b1", 1, "FAILED")]:
        s.set_step(rid, StepWrite(job_id="j", step_id="s", status=status, attempt=attempt), None)
    got = {f.flow_id: f for f in stores().flow_summaries()}
    assert sorted(got) == ["a", "b"]
    a, b = got["a"], got["b"]
    assert dict(a.runs_by_status) == {"SUCCESS": 2, "FAILED": 1, "RUNNING": 1}
    assert a.last_run is not None and a.last_run.run_id == "a4" and a.last_success_at == 50.0 and a.step_failures == 2
    assert dict(b.runs_by_status) == {"FAILED": 1} and b.last_success_at is None and b.step_failures == 1
    assert b.last_run is not None and b.last_run.run_id == "b1"


# jobs, steps, attempts -------------------------------------------------------------------------


def test_jobs_steps_and_attempts(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    s.set_job("r1", "j", "RUNNING", ev("job.started"), started_at=1.0)
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="RUNNING", attempt=1, started_at=1.0), ev("step.started"))
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="FAILED", attempt=1, error="boom", finished_at=2.0), None)
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="RUNNING", attempt=2, started_at=3.0), None)
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="SUCCESS", attempt=2, outcome="success",
                               outputs={"rows": 3, "token": "x"}, masked_keys=("token",), finished_at=4.0),
               ev("step.finished"), sync=False)
    s.sync()
    s.set_job("r1", "j", "SUCCESS", ev("job.finished"), outcome="success", outputs={"count": 3}, finished_at=5.0)
    step = s.steps("r1")[("j", "s")]
    assert (step.status, step.attempt, step.outcome, step.started_at, step.finished_at) == ("SUCCESS", 2, "success", 3.0, 4.0)
    assert dict(step.outputs) == {"rows": 3, "token": "x"} and step.masked_keys == ("token",)
    assert [(a.attempt, a.status, a.error) for a in s.attempts("r1")] == [(1, "FAILED", "boom"), (2, "SUCCESS", None)]
    job = s.jobs("r1")["j"]
    assert (job.status, job.outcome, dict(job.outputs), job.started_at, job.finished_at) == ("SUCCESS", "success", {"count": 3}, 1.0, 5.0)
    assert [e.name for e in s.history("r1")] == ["run.started", "job.started", "step.started", "step.finished", "job.finished"]


def test_set_steps_writes_all_in_one_go(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    s.set_steps("r1", [StepWrite(job_id="j", step_id=f"s{i}", status="SKIPPED", attempt=0, reason="upstream skipped")
                       for i in range(3)], ev("job.skipped"))
    assert sorted(k[1] for k, v in s.steps("r1").items() if v.status == "SKIPPED") == ["s0", "s1", "s2"]
    assert s.attempts("r1") == []  # attempt 0: never executed


def test_history_is_ordered_per_run_with_data(stores: Stores) -> None:
    a, b = stores(), stores()
    a.create_run(run_rec("r1"), ev("run.started", "r1"))
    b.create_run(run_rec("r2"), ev("run.started", "r2"))
    for i in range(5):
        (a if i % 2 else b).append_history(ev(f"e{i}", "r1", n=i))
    names = [(e.name, dict(e.data)) for e in a.history("r1")]
    assert names == [("run.started", {})] + [(f"e{i}", {"n": i}) for i in range(5)]
    assert [e.name for e in a.history("r2")] == ["run.started"]


def test_the_mask_applies_to_everything_written(stores: Stores) -> None:
    s = stores()
    s.set_mask(lambda text: text.replace("s3cret", "***"))
    s.create_run(run_rec(), Event(name="run.started", run_id="r1", ts=1.0, flow_id="f", data=freeze({"arg": "s3cret"})))
    s.set_step("r1", StepWrite(job_id="j", step_id="s", status="FAILED", attempt=1, error="login s3cret refused",
                               reason="s3cret", outputs={"v": "s3cret"}), None)
    s.set_job("r1", "j", "FAILED", None, reason="s3cret", outputs={"v": "s3cret"})
    s.update_run("r1", None, error="s3cret", cancel_reason="s3cret")
    s.add_event(ReceivedEvent(id=0, run_id="r1", job_id="j", step_id="s", name="go", data=freeze({"v": "s3cret"}),
                              received_at=1.0), None)
    reader = stores()
    seen = repr((reader.get_run("r1"), reader.steps("r1"), reader.jobs("r1"), reader.history("r1"),
                 reader.pending_events("r1"), reader.attempts("r1")))
    assert "s3cret" not in seen and "***" in seen


# waits and events ------------------------------------------------------------------------------


def test_waits_events_and_due_runs(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec("r1", status="RUNNING"), ev("run.started"))
    s.create_run(run_rec("r2", flow_id="g", status="RUNNING"), ev("run.started", "r2"))
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("approved", "rejected"), created_at=1.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1, reason="event approved"), ev("step.waiting"))
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="t", kind="timer", due_at=50.0, created_at=2.0),
               StepWrite(job_id="j", step_id="t", status="WAITING", attempt=1), None)
    assert [(w.step_id, w.events, w.due_at) for w in s.waits("r1")] == [("w", ("approved", "rejected"), None), ("t", (), 50.0)]
    assert s.steps("r1")[("j", "w")].status == "WAITING"
    s.update_run("r1", None, status="WAITING", due_at=50.0)
    s.update_run("r2", None, status="WAITING", due_at=10.0)
    assert [r.run_id for r in s.due_runs(60.0)] == ["r2", "r1"]
    assert [r.run_id for r in s.due_runs(20.0)] == ["r2"]
    assert [r.run_id for r in s.due_runs(60.0, flow_id="f")] == ["r1"]
    assert [r.run_id for r in s.due_runs(60.0, limit=1)] == ["r2"]
    eid = s.add_event(ReceivedEvent(id=0, run_id="r1", job_id="j", step_id="w", name="approved",
                                    data=freeze({"by": "ops"}), received_at=2.0), ev("event.received"))
    pending = s.pending_events("r1")
    assert [(e.id, e.name, dict(e.data)) for e in pending] == [(eid, "approved", {"by": "ops"})]
    s.consume_event(eid)
    assert s.pending_events("r1") == []
    s.remove_wait("r1", "j", "w")
    assert [w.step_id for w in s.waits("r1")] == ["t"]
    s.clear_waits("r1", ev("run.cancelled"))
    assert s.waits("r1") == []


def test_cancel_run_in_one_transaction(stores: Stores) -> None:
    s = stores()
    s.create_run(run_rec(status="WAITING"), ev("run.started"))
    s.set_job("r1", "j", "WAITING", None)
    s.set_wait(WaitRecord(run_id="r1", job_id="j", step_id="w", kind="event", events=("go",), created_at=1.0),
               StepWrite(job_id="j", step_id="w", status="WAITING", attempt=1), None)
    s.cancel_run("r1", "no longer needed", 9.0, ev("run.cancelled"))
    got = s.get_run("r1")
    assert got is not None and (got.status, got.cancel_reason, got.finished_at, got.due_at) == (
        "CANCELLED", "no longer needed", 9.0, None)
    assert s.jobs("r1")["j"].status == "CANCELLED" and s.steps("r1")[("j", "w")].status == "CANCELLED"
    assert s.waits("r1") == []


# locks -----------------------------------------------------------------------------------------


def test_named_locks_exclude_other_clients(stores: Stores) -> None:
    a, b = stores(), stores()
    la, lb = a.lock("user:k"), b.lock("user:k")
    assert la.acquire(0) and la.is_held
    assert not lb.acquire(0) and not lb.is_held
    assert not b.lock_is_free("user:k")
    assert b.lock("user:other").acquire(0)
    la.release()
    assert not la.is_held
    assert b.lock_is_free("user:k") and lb.acquire(0)
    lb.release()
    lb.release()  # releasing a lock not held does nothing


def _inside(thread: threading.Thread, method: Callable[..., object]) -> bool:
    """``thread`` is running ``method`` (a bound method: that object's, not another's)."""
    frame = sys._current_frames().get(thread.ident or -1)
    code, owner = method.__func__.__code__, method.__self__  # type: ignore[attr-defined]
    while frame is not None:
        if frame.f_code is code and frame.f_locals.get("self") is owner:
            return True
        frame = frame.f_back
    return False


def test_a_lock_waits_for_its_holder(stores: Stores) -> None:
    """The holder releases while the waiter is inside ``acquire(30)`` (seen in its stack, not
    guessed from a delay), and the waiter gets the lock."""
    a, b = stores(), stores()
    la, lb = a.lock("flow:f"), b.lock("flow:f")
    assert la.acquire(0)
    assert not lb.acquire(0)  # held: a try without waiting fails
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(lb.acquire(30)), daemon=True)
    waiter.start()
    try:
        wait_until(lambda: _inside(waiter, lb.acquire), what="the waiter to be in acquire()")
        assert got == []  # it waits: the holder still has the lock
    finally:
        la.release()
        waiter.join(60)
    assert got == [True] and lb.is_held
    lb.release()


def test_a_dead_holders_lock_is_free_and_its_run_shows_crashed(stores: Stores, location: str) -> None:
    s = stores()
    s.create_run(run_rec(), ev("run.started"))
    code = textwrap.dedent(f"""
        import sys
        from aetherflow.state.backends import open_store
        store = open_store({location!r})
        held = store.lock({run_lock_key('r1')!r})
        assert held.acquire(0)
        print("held", flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        rec = s.get_run("r1")
        assert rec is not None
        assert not s.lock_is_free(run_lock_key("r1")) and shown_status(s, rec) == "RUNNING"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # freed by the system once it notices the death: the kernel at once (a file lock), a
        # database server when it ends the dead client's session (its connection closed)
        wait_until(lambda: s.lock_is_free(run_lock_key("r1")), timeout=30, what="the dead holder's lock to be freed")
        assert shown_status(s, rec) == "CRASHED"
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def test_lock_holder_records(stores: Stores) -> None:
    s = stores()
    s.record_lock(LockRecord(name="user:k", run_id="r1", pid=1, host="h", since=5.0, kind="with_lock"), None)
    s.record_lock(LockRecord(name="flow:f", run_id="r1", pid=1, host="h", since=6.0, kind="flow"), None)
    assert [lk.name for lk in stores().locks()] == ["user:k", "flow:f"]
    holder = s.lock_holder("user:k")
    assert holder is not None and (holder.run_id, holder.pid, holder.host, holder.kind) == ("r1", 1, "h", "with_lock")
    s.remove_lock("user:k", "other-run", None)  # only the holder's record is removed
    assert s.lock_holder("user:k") is not None
    s.remove_lock("user:k", "r1", None)
    assert s.lock_holder("user:k") is None and [lk.name for lk in s.locks()] == ["flow:f"]


def test_location_names_the_store(stores: Stores, location: str) -> None:
    assert stores().location == location
