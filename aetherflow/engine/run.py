"""The executor: runs one run of a flow from a ``Plan``. It never prints; it records and emits.

Algorithm
1. Seed the template scope with restored jobs and steps (outputs from the store).
2. Schedule jobs in topological order (file order breaks ties), up to ``max_parallel_jobs`` at
   once. A job runs when every ``depends_on`` job ended SUCCESS; if one FAILED, BLOCKED or was
   CANCELLED it is BLOCKED; else if one was SKIPPED it is SKIPPED (``upstream skipped``);
   ``depends_on_policy: all_done`` runs it whatever the upstream outcome. A job whose upstream
   is WAITING stays PENDING.
3. In a job, steps run in order. Per step: restored → re-enter scope and route; ``when`` false →
   SKIPPED; otherwise render inputs, record RUNNING (attempt n), call the step in a worker
   thread (so signals, cancel and ``timeout_seconds`` are honoured), then record the result
   and its outputs in one transaction. Failures retry per ``retry:``; a delay above the inline
   limit parks the step WAITING with a due time.
4. Route the result: ``on_outcome`` (continue | skip_job | fail | complete_job) and
   ``on_no_data: skip_job``.
5. The run ends WAITING if a job waits, else FAILED if a job failed or was blocked, else
   SUCCESS; a cancel or signal ends it CANCELLED / INTERRUPTED. Cleanup policy runs last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aetherflow import template
from aetherflow.engine.calls import StepCaller
from aetherflow.engine.locking import LockService, holder_text
from aetherflow.engine.results import (
    backoff_delay,
    error_text,
    iso,
    reason_of,
    restore_job_outputs,
    restore_outputs,
    wait_text,
)
from aetherflow.engine.services import RunInputs, RunResult, Services
from aetherflow.errors import Interrupted, LockBusyError, StepError, StepTimeoutError, TemplateError
from aetherflow.events import Event
from aetherflow.locks import OsLock, job_lock_key
from aetherflow.model import (
    EMPTY,
    MASKED_KEYS_FIELD,
    STEP_SKIPPED,
    STEP_WAITING,
    JobSpec,
    JobStatus,
    Masked,
    RunStatus,
    StepResult,
    StepSpec,
    StepStatus,
    freeze,
    thaw,
)
from aetherflow.state.store import LockRecord, StepRecord, StepWrite, WaitRecord
from aetherflow.workspace import ensure, job_workspace, remove_run_dirs

CANCEL_POLL_SECONDS = 0.05


def _when(expr: Any, scope: Mapping[str, Any]) -> bool:
    from aetherflow import expressions  # only flows with `when` import it

    return bool(expressions.evaluate(expr, scope))

__all__ = ["Executor", "RunInputs", "RunResult", "Services", "backoff_delay"]

#: the recorded reason of a job or step whose `when` was false (such a step did not execute)
WHEN_FALSE = "condition false"



class _JobWaiting(Exception):
    """Internal: the job parks WAITING."""


class _JobFailed(Exception):
    """Internal: the job ends FAILED with this reason."""


class Executor:
    def __init__(self, inputs: RunInputs, svc: Services) -> None:
        self.inp = inputs
        self.svc = svc
        self.flow = inputs.flow
        self.run_id = inputs.run.run_id
        self.plan = inputs.plan
        self.result = RunResult(status=RunStatus.RUNNING)
        self._status_lock = threading.Lock()
        self.locks = LockService(self)
        self._waits = {(w.job_id, w.step_id): w for w in svc.store.waits(self.run_id)}
        self._events = svc.store.pending_events(self.run_id)
        self.jobs_scope: dict[str, dict[str, Any]] = {}
        self.base_scope: dict[str, Any] = {
            "env": inputs.env,
            "params": inputs.params,
            "secrets": inputs.secrets,
            "run": template.run_scope(self.run_id, inputs.run.created_at, inputs.run.attempt),
            "run_id": self.run_id,
            "flow_id": self.flow.id,
            "jobs": self.jobs_scope,
        }
        self._jobs = {j.id: j for j in self.flow.jobs}  # FlowSpec.job() scans: O(jobs) per lookup
        self._next_cancel_poll = 0.0
        self.calls = StepCaller(self)

    # events ---------------------------------------------------------------------------------
    def event(self, name: str, *, job_id: str | None = None, step_id: str | None = None, attempt: int | None = None, **data: Any) -> Event:
        return Event(
            name=name,
            run_id=self.run_id,
            ts=self.svc.clock(),
            flow_id=self.flow.id,
            job_id=job_id,
            step_id=step_id,
            attempt=attempt,
            data=freeze(data) if data else EMPTY,
        )

    def emit(self, name: str, **kw: Any) -> Event:
        ev = self.event(name, **kw)
        self.svc.store.append_history(ev)
        self.svc.emit(ev)
        return ev

    def _rec(self, ev: Event) -> Event:
        self.svc.emit(ev)
        return ev

    # scheduling -----------------------------------------------------------------------------
    def execute(self) -> RunResult:
        self._seed_scope()
        pending = [j for j in self.plan.order if j in self.plan.selected and j not in self.plan.restored_jobs]
        try:
            if self.flow.max_parallel_jobs <= 1:
                self._run_sequential(pending)
            else:
                self._run_parallel(pending)
        except Interrupted as exc:
            self.result.interrupt = self.svc.cancel.why() or str(exc)
        finally:
            self.calls.stop()
        return self._finish()

    def _seed_scope(self) -> None:
        stored_steps = self.plan.stored_steps
        by_job: dict[str, dict[str, Any]] = {}
        for (jid, sid), rec in stored_steps.items():
            if (jid, sid) in self.plan.restored_steps:
                by_job.setdefault(jid, {})[sid] = {
                    "status": rec.status,
                    "outcome": rec.outcome,
                    "outputs": restore_outputs(rec),
                }
        for jid, jrec in self.plan.stored_jobs.items():
            if jid in self.plan.restored_jobs or (jid not in self.plan.selected and jrec.status == JobStatus.SUCCESS):
                self.jobs_scope[jid] = {
                    "status": jrec.status,
                    "outcome": jrec.outcome,
                    "skip_reason": jrec.reason if jrec.status == JobStatus.SKIPPED else None,
                    "outputs": restore_job_outputs(jrec),
                    "steps": by_job.get(jid, {}),
                }
                self.result.jobs[jid] = jrec.status
                if jrec.reason:
                    self.result.reasons[jid] = jrec.reason

    def _dep_decision(self, job: JobSpec) -> tuple[str | None, str | None]:
        """(decision, reason): decision None = wait, 'run', 'BLOCKED', 'SKIPPED'."""
        statuses: list[tuple[str, str]] = []
        for d in job.depends_on:
            st = self.result.jobs.get(d)
            if st is None and d not in self.plan.selected:
                rec = self.plan.stored_jobs.get(d)
                if rec is not None and rec.status == JobStatus.SUCCESS:
                    st = JobStatus.SUCCESS
                else:
                    return "BLOCKED", f"upstream job '{d}' is not selected and has not succeeded in this run"
            statuses.append((d, st or JobStatus.PENDING))
        if any(s in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING) for _, s in statuses):
            return None, None
        if job.depends_on_policy == "all_done":
            return "run", None
        for d, s in statuses:
            if s in (JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.CANCELLED):
                return "BLOCKED", f"upstream job '{d}' {s}"
        for _d, s in statuses:
            if s == JobStatus.SKIPPED:
                return "SKIPPED", "upstream skipped"
        return "run", None

    def _run_sequential(self, pending: list[str]) -> None:
        progress = True
        while pending and progress:
            progress = False
            for jid in list(pending):
                job = self._jobs[jid]
                decision, reason = self._dep_decision(job)
                if decision is None:
                    continue
                pending.remove(jid)
                progress = True
                self._check_cancel()
                self._start_job(job, decision, reason)
                break

    def _run_parallel(self, pending: list[str]) -> None:
        # parallel flows only
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        limit = self.flow.max_parallel_jobs
        running: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aetherflow-job") as pool:
            try:
                while pending or running:
                    started = False
                    for jid in list(pending):
                        if len(running) >= limit or self.svc.cancel.is_set():
                            break
                        job = self._jobs[jid]
                        decision, reason = self._dep_decision(job)
                        if decision is None:
                            continue
                        pending.remove(jid)
                        if decision == "run":
                            with self._status_lock:
                                self.result.jobs[jid] = JobStatus.RUNNING
                            running[pool.submit(self._start_job, job, decision, reason)] = jid
                        else:
                            self._start_job(job, decision, reason)
                        started = True
                    if not running:
                        if not started:
                            break
                        continue
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        running.pop(fut)
                        exc = fut.exception()
                        if exc is not None and not isinstance(exc, Interrupted):
                            raise exc
                    self._check_cancel()
            finally:
                if self.svc.cancel.is_set():
                    for fut in running:
                        fut.cancel()

    def _set_job_status(self, jid: str, status: str, reason: str | None = None) -> None:
        with self._status_lock:
            self.result.jobs[jid] = status
            if reason:
                self.result.reasons[jid] = reason
            entry = self.jobs_scope.setdefault(jid, {"outputs": {}, "steps": {}, "outcome": None})
            entry["status"] = status
            entry["skip_reason"] = reason if status == JobStatus.SKIPPED else None

    def _check_cancel(self, *, store: bool = True) -> None:
        if self.svc.cancel.is_set():
            raise Interrupted(f"run stopped ({self.svc.cancel.why()})")
        if not store:  # before a restored step nothing starts: the next executed step asks the store
            return
        # `aetherflow cancel` from another process: asked of the store at most every
        # CANCEL_POLL_SECONDS (a step that took longer is always followed by a look)
        now = time.monotonic()
        if now < self._next_cancel_poll:
            return
        self._next_cancel_poll = now + CANCEL_POLL_SECONDS
        reason = self.svc.should_cancel()
        if reason is not None:
            self.svc.cancel.set("cancel")
            raise Interrupted(f"run cancelled: {reason}")

    # one job --------------------------------------------------------------------------------
    def _start_job(self, job: JobSpec, decision: str, reason: str | None) -> None:
        now = self.svc.clock()
        if decision == "BLOCKED":
            self._set_job_status(job.id, JobStatus.BLOCKED, reason)
            self.svc.store.set_job(
                self.run_id, job.id, JobStatus.BLOCKED, self._rec(self.event("job.blocked", job_id=job.id, reason=reason)),
                reason=reason, finished_at=now,
            )
            return
        if decision == "SKIPPED":
            self._skip_job(job, reason or "upstream skipped", 0)
            return
        if job.when is not None:
            scope = self._scope_for(job, {})
            if not _when(job.when, scope):
                self._skip_job(job, WHEN_FALSE, 0)
                return
        lock: OsLock | None = None
        if self.flow.locks.scope == "job":
            try:
                lock = self._job_lock(job)
            except LockBusyError as exc:
                self._job_lock_busy(job, exc)
                return
        try:
            self._run_job(job)
        finally:
            if lock is not None:
                self.svc.store.remove_lock(lock.key, self.run_id, self._rec(self.event("lock.released", job_id=job.id, lock=lock.key)))
                lock.release()

    def _job_lock(self, job: JobSpec) -> OsLock:
        key = job_lock_key(self.flow.id, job.id)
        lock = OsLock(self.svc.lock_dir, key)
        wait = self.flow.locks.wait_seconds
        if not lock.acquire(0):
            if wait > 0:
                self.svc.store.sync()  # what was written without an fsync must not wait on another process
            if wait <= 0 or not lock.acquire(wait):
                holder = holder_text(self.svc.store.lock_holder(key))
                raise LockBusyError(f"job lock '{key}' is held by {holder}")
        self.svc.store.record_lock(
            LockRecord(name=key, run_id=self.run_id, pid=self.svc.pid, host=self.svc.host, since=self.svc.clock(), kind="job"),
            self._rec(self.event("lock.acquired", job_id=job.id, lock=key)),
        )
        return lock

    def _job_lock_busy(self, job: JobSpec, exc: LockBusyError) -> None:
        """The job lock was not acquired within wait_seconds: the job fails (its first step to run
        carries the message naming the holder); independent jobs go on."""
        error = self.inp.mask(error_text(exc))
        self.emit("lock.busy", job_id=job.id, lock=job_lock_key(self.flow.id, job.id), error=error)
        first = next((s for s in job.steps if (job.id, s.id) not in self.plan.restored_steps), job.steps[0])
        self._fail_step(job, first, self._attempt_of(job.id, first.id) + 1, error)
        self._set_job_status(job.id, JobStatus.FAILED, error)
        self.svc.store.set_job(
            self.run_id, job.id, JobStatus.FAILED,
            self._rec(self.event("job.finished", job_id=job.id, status="FAILED", reason=error)),
            reason=error, finished_at=self.svc.clock(),
        )

    def _skip_job(self, job: JobSpec, reason: str, from_index: int) -> None:
        now = self.svc.clock()
        writes = [
            StepWrite(job_id=job.id, step_id=s.id, status=StepStatus.SKIPPED, attempt=self._attempt_of(job.id, s.id), reason=reason, finished_at=now)
            for s in job.steps[from_index:]
            if (job.id, s.id) not in self.plan.restored_steps
        ]
        self._set_job_status(job.id, JobStatus.SKIPPED, reason)
        entry = self.jobs_scope[job.id]
        for w in writes:
            entry["steps"][w.step_id] = {"status": StepStatus.SKIPPED, "outcome": None, "outputs": {}}
        ev = self._rec(self.event("job.skipped", job_id=job.id, reason=reason))
        if writes:
            self.svc.store.set_steps(self.run_id, writes, None)
        self.svc.store.set_job(
            self.run_id, job.id, JobStatus.SKIPPED, ev, reason=reason, outcome=entry.get("outcome"),
            outputs=self._stored_job_outputs(entry.get("outputs") or {}), finished_at=now,
        )

    def _stored_job_outputs(self, outputs: Mapping[str, Any]) -> dict[str, Any] | None:
        """Job outputs as stored: masked, with the keys that carried a secret remembered (so a
        template reading them after a resume fails instead of seeing ``***``)."""
        if not outputs:
            return None
        masked, keys = self.inp.mask_outputs(outputs)
        if keys:
            masked[MASKED_KEYS_FIELD] = list(keys)
        return masked

    def _attempt_of(self, job_id: str, step_id: str) -> int:
        rec = self.plan.stored_steps.get((job_id, step_id))
        return rec.attempt if rec else 0

    def _scope_for(self, job: JobSpec, steps_scope: Mapping[str, Any], ws: Any = None) -> dict[str, Any]:
        scope = dict(self.base_scope)
        entry = self.jobs_scope.get(job.id) or {}
        scope["job"] = {"id": job.id, "outputs": entry.get("outputs", {})}
        scope["steps"] = steps_scope
        if ws is not None:
            scope["workspace"] = ws.as_scope()
        return scope

    def _run_job(self, job: JobSpec) -> None:
        now = self.svc.clock()
        ws = ensure(job_workspace(self.inp.workspace_root, self.flow.id, job.id, self.run_id))
        outputs: dict[str, Any] = {}
        stored_job = self.plan.stored_jobs.get(job.id)
        if stored_job is not None and stored_job.outputs:
            outputs.update(restore_job_outputs(stored_job))
        steps_info: dict[str, Any] = {}
        with self._status_lock:
            self.jobs_scope[job.id] = {"status": JobStatus.RUNNING, "outcome": None, "skip_reason": None, "outputs": outputs, "steps": steps_info}
            self.result.jobs[job.id] = JobStatus.RUNNING
        self.svc.store.set_job(self.run_id, job.id, JobStatus.RUNNING, self._rec(self.event("job.started", job_id=job.id, workspace=str(ws.path))), started_at=now)
        steps_scope: dict[str, Any] = {}
        scope = self._scope_for(job, steps_scope, ws)
        scope["job"]["outputs"] = outputs
        try:
            for idx, step in enumerate(job.steps):
                self._check_cancel(store=(job.id, step.id) not in self.plan.restored_steps)
                action = self._run_step(job, step, idx, scope, steps_scope, steps_info, outputs, ws)
                if action == "continue":
                    continue
                kind, reason = action
                if kind == "skip_job":
                    self._skip_job(job, reason, idx + 1)
                    return
                if kind == "complete_job":
                    self._skip_rest(job, idx + 1, reason)
                    break
                if kind == "fail":
                    raise _JobFailed(reason)
        except _JobWaiting:
            self._set_job_status(job.id, JobStatus.WAITING)
            self.svc.store.set_job(self.run_id, job.id, JobStatus.WAITING, self._rec(self.event("job.waiting", job_id=job.id)), outputs=self._stored_job_outputs(outputs))
            return
        except _JobFailed as exc:
            reason = str(exc)
            self._set_job_status(job.id, JobStatus.FAILED, reason)
            self.svc.store.set_job(
                self.run_id, job.id, JobStatus.FAILED, self._rec(self.event("job.finished", job_id=job.id, status="FAILED", reason=reason)),
                reason=reason, outputs=self._stored_job_outputs(outputs), outcome=self.jobs_scope[job.id].get("outcome"), finished_at=self.svc.clock(),
            )
            return
        except Interrupted:
            why = self.svc.cancel.why() or "interrupted"
            status = JobStatus.CANCELLED if why == "cancel" else JobStatus.FAILED
            reason = "cancelled" if why == "cancel" else f"interrupted ({why})"
            self._set_job_status(job.id, status, reason)
            self.svc.store.set_job(
                self.run_id, job.id, status, self._rec(self.event("job.finished", job_id=job.id, status=status, reason=reason)),
                reason=reason, outputs=self._stored_job_outputs(outputs), finished_at=self.svc.clock(),
            )
            raise
        self._set_job_status(job.id, JobStatus.SUCCESS)
        self.svc.store.set_job(
            self.run_id, job.id, JobStatus.SUCCESS,
            self._rec(self.event("job.finished", job_id=job.id, status="SUCCESS", duration=round(self.svc.clock() - now, 6))),
            outputs=self._stored_job_outputs(outputs), outcome=self.jobs_scope[job.id].get("outcome"), finished_at=self.svc.clock(),
        )

    def _skip_rest(self, job: JobSpec, from_index: int, reason: str) -> None:
        now = self.svc.clock()
        writes = [
            StepWrite(job_id=job.id, step_id=s.id, status=StepStatus.SKIPPED, attempt=self._attempt_of(job.id, s.id), reason=reason, finished_at=now)
            for s in job.steps[from_index:]
            if (job.id, s.id) not in self.plan.restored_steps
        ]
        if writes:
            self.svc.store.set_steps(self.run_id, writes, None)
        entry = self.jobs_scope[job.id]["steps"]
        for w in writes:
            entry[w.step_id] = {"status": StepStatus.SKIPPED, "outcome": None, "outputs": {}}

    # one step -------------------------------------------------------------------------------
    def _run_step(
        self,
        job: JobSpec,
        step: StepSpec,
        idx: int,
        scope: dict[str, Any],
        steps_scope: dict[str, Any],
        steps_info: dict[str, Any],
        job_outputs: dict[str, Any],
        ws: Any,
    ) -> Any:
        key = (job.id, step.id)
        restored = self.plan.restored_steps.get(key)
        if restored is not None:
            outs = restore_outputs(restored)
            status, outcome, reason = restored.status, restored.outcome, restored.reason
            self._promote(step, outs, scope, job_outputs, restored_ok=True)
        else:
            if step.when is not None and not _when(step.when, scope):
                outs, status, outcome, reason = {}, StepStatus.SKIPPED, "skipped", WHEN_FALSE
                self.svc.store.set_step(
                    self.run_id,
                    StepWrite(job_id=job.id, step_id=step.id, status=status, attempt=self._attempt_of(*key), outcome=outcome,
                              reason=reason, finished_at=self.svc.clock()),
                    self._rec(self.event("step.skipped", job_id=job.id, step_id=step.id, reason=reason)),
                )
            else:
                # a result followed by a synchronous commit before anything else can run needs
                # no fsync of its own (docs/state.md): the next step's RUNNING makes both durable.
                # Run one job at a time, that holds after a job's last step too: the next job's
                # first step, a skipped or blocked job, or the run's end writes synchronously,
                # and a wait for a job lock syncs first (_job_lock)
                nxt = job.steps[idx + 1] if idx + 1 < len(job.steps) else None
                more = (self.flow.max_parallel_jobs <= 1) if nxt is None else (job.id, nxt.id) not in self.plan.restored_steps
                res, outs = self._execute(job, step, scope, ws, job_outputs, more=more)
                status = res.status
                outcome = res.outcome or ("skipped" if res.status == STEP_SKIPPED else "success")
                reason = res.reason or (outs.get("reason") if isinstance(outs.get("reason"), str) else None)
        steps_scope[step.id] = outs
        steps_info[step.id] = {"status": status, "outcome": outcome, "outputs": outs}
        if reason != WHEN_FALSE or status != StepStatus.SKIPPED:
            self.jobs_scope[job.id]["outcome"] = outcome  # a job's outcome is its last *executed* step's
        action = step.on_outcome.get(outcome) if outcome else None
        if action is None and status == StepStatus.SKIPPED and step.on_no_data == "skip_job":
            action = "skip_job"
        if action is None or action == "continue":
            return "continue"
        if action == "skip_job":
            return ("skip_job", reason or f"step '{step.id}' skipped the job (outcome {outcome})")
        if action == "complete_job":
            return ("complete_job", f"job completed by step '{step.id}' (outcome {outcome})")
        return ("fail", f"step '{step.id}' outcome '{outcome}' is routed to fail")

    def _promote(self, step: StepSpec, outs: Mapping[str, Any], scope: dict[str, Any], job_outputs: dict[str, Any], *, restored_ok: bool = False) -> None:
        if not step.outputs:
            return
        local = dict(scope)
        local["result"] = outs
        try:
            rendered = template.render(step.outputs, local)
        except TemplateError:
            if restored_ok:
                return
            raise
        job_outputs.update(rendered)

    def _execute(self, job: JobSpec, step: StepSpec, scope: dict[str, Any], ws: Any, job_outputs: dict[str, Any], *,
                 more: bool = False) -> tuple[StepResult, dict[str, Any]]:
        key = (job.id, step.id)
        stored = self.plan.stored_steps.get(key)
        attempt = stored.attempt if stored is not None else 0
        wakeup: dict[str, Any] | None = None
        if stored is not None and stored.status == StepStatus.WAITING and key not in self.plan.reset_steps:
            done = self._resume_wait(job, step, stored)
            if isinstance(done, StepResult):
                outs = dict(done.outputs)
                self._promote(step, outs, scope, job_outputs)
                return done, outs
            wakeup = done
        st = self.calls.step_type(step.type)
        try:
            inputs = template.render(step.inputs, scope)
        except TemplateError as exc:
            self._fail_step(job, step, attempt + 1, f"inputs: {error_text(exc)}")
            raise _JobFailed(f"step '{step.id}' failed: inputs: {error_text(exc)}") from exc
        retry = step.retry
        while True:
            attempt += 1
            started = self.svc.clock()
            self.svc.store.set_step(
                self.run_id,
                StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.RUNNING, attempt=attempt, started_at=started),
                self._rec(self.event("step.started", job_id=job.id, step_id=step.id, attempt=attempt, type=step.type)),
            )
            self.svc.hooks("step.started", {"job": job.id, "step": step.id, "attempt": attempt})
            error: str | None = None
            try:
                res = self.calls.call(st, job, step, inputs, attempt, ws, wakeup)
                outs = self.calls.check_result(st, res, inputs)
                if res.status == STEP_WAITING:
                    self._park(job, step, attempt, res, started)
                    raise _JobWaiting()
                masked, masked_keys = self.inp.mask_outputs(outs)
                self._promote(step, outs, scope, job_outputs)
            except _JobWaiting:
                raise
            except Interrupted:
                # record the attempt's end: an interrupted run must not show this step RUNNING
                self._fail_step(job, step, attempt, f"interrupted ({self.svc.cancel.why() or 'stopped'})", started=started)
                raise
            except Exception as exc:  # noqa: BLE001 - any exception is a step failure
                if self.svc.cancel.is_set() and not isinstance(exc, StepTimeoutError):
                    self._fail_step(job, step, attempt, f"interrupted ({self.svc.cancel.why()})")
                    raise Interrupted(str(exc)) from exc
                error = self.inp.mask(error_text(exc))
            if error is None:
                outcome = res.outcome or ("skipped" if res.status == STEP_SKIPPED else "success")
                now = self.svc.clock()
                self.svc.store.set_step(
                    self.run_id,
                    StepWrite(job_id=job.id, step_id=step.id, status=res.status, attempt=attempt, outcome=outcome,
                              outputs=masked, masked_keys=masked_keys, reason=reason_of(res, masked),
                              started_at=started, finished_at=now),
                    self._rec(self.event("step.finished", job_id=job.id, step_id=step.id, attempt=attempt, status=res.status,
                                         outcome=outcome, duration=round(now - started, 6))),
                    sync=not more,
                )
                self.svc.hooks("step.finished", {"job": job.id, "step": step.id, "attempt": attempt})
                return res, outs
            if attempt < retry.max_attempts:
                delay = backoff_delay(retry, attempt)
                now = self.svc.clock()
                self.svc.store.set_step(
                    self.run_id,
                    StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.FAILED, attempt=attempt, error=error,
                              started_at=started, finished_at=now),
                    self._rec(self.event("step.retry", job_id=job.id, step_id=step.id, attempt=attempt, error=error, delay=round(delay, 3))),
                )
                if delay > self.svc.inline_wait_max:
                    due = now + delay
                    wait = WaitRecord(run_id=self.run_id, job_id=job.id, step_id=step.id, kind="retry", due_at=due, created_at=now)
                    self.svc.store.set_wait(
                        wait,
                        StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.WAITING, attempt=attempt, error=error,
                                  reason=f"retry due at {iso(due)}", started_at=started, finished_at=now,
                                  attempt_status=StepStatus.FAILED),
                        self._rec(self.event("step.waiting", job_id=job.id, step_id=step.id, attempt=attempt, kind="retry", due_at=due)),
                    )
                    self._waits[key] = wait
                    raise _JobWaiting()
                if self.svc.cancel.wait(delay):
                    raise Interrupted("interrupted during retry delay")
                continue
            self._fail_step(job, step, attempt, error, started=started)
            raise _JobFailed(f"step '{step.id}' failed: {error}")

    def _fail_step(self, job: JobSpec, step: StepSpec, attempt: int, error: str, *, started: float | None = None) -> None:
        now = self.svc.clock()
        error = self.inp.mask(error)
        self.svc.store.set_step(
            self.run_id,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.FAILED, attempt=attempt, error=error,
                      started_at=started, finished_at=now),
            self._rec(self.event("step.failed", job_id=job.id, step_id=step.id, attempt=attempt, error=error)),
        )
        self.result.failed_steps.append((job.id, step.id, error))

    def _park(self, job: JobSpec, step: StepSpec, attempt: int, res: StepResult, started: float) -> None:
        now = self.svc.clock()
        if not res.events and res.due_at is None:
            raise StepError("a WAITING result must name events or a due time", code="step.bad_wait")
        wait = WaitRecord(
            run_id=self.run_id, job_id=job.id, step_id=step.id, kind="event" if res.events else "timer",
            events=res.events, due_at=res.due_at, created_at=now,
        )
        what = wait_text(wait)
        self.svc.store.set_wait(
            wait,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.WAITING, attempt=attempt, reason=what, started_at=started,
                      outputs=thaw(res.outputs) or None),
            self._rec(self.event("step.waiting", job_id=job.id, step_id=step.id, attempt=attempt, kind=wait.kind,
                                 events=list(wait.events), due_at=wait.due_at)),
        )
        self._waits[(job.id, step.id)] = wait

    def _resume_wait(self, job: JobSpec, step: StepSpec, stored: StepRecord) -> StepResult | dict[str, Any] | None:
        """A stored WAITING step: an event completes it, a due timer wakes it, else it keeps waiting."""
        key = (job.id, step.id)
        wait = self._waits.get(key)
        for ev in self._events:
            if (ev.job_id, ev.step_id) == key:
                outputs = thaw(ev.data)
                outputs = outputs if isinstance(outputs, dict) else {"data": outputs}
                carried = tuple(outputs.pop(MASKED_KEYS_FIELD, ()))  # masked when the event was stored
                masked, masked_keys = self.inp.mask_outputs(outputs)
                masked_keys = tuple(dict.fromkeys((*carried, *masked_keys)))
                for k in carried:
                    outputs[k] = Masked(f"{job.id}.{step.id}.{k}")
                now = self.svc.clock()
                self.svc.store.set_step(
                    self.run_id,
                    StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.SUCCESS, attempt=stored.attempt, outcome=ev.name,
                              outputs=masked, masked_keys=masked_keys, finished_at=now),
                    self._rec(self.event("step.finished", job_id=job.id, step_id=step.id, attempt=stored.attempt, status="SUCCESS",
                                         outcome=ev.name, via="event")),
                )
                self.svc.store.consume_event(ev.id)
                self.svc.store.remove_wait(self.run_id, job.id, step.id)
                self._waits.pop(key, None)
                return StepResult("SUCCESS", outputs, outcome=ev.name)
        if wait is None:
            return {"kind": "lost"}
        if wait.due_at is not None and wait.due_at <= self.svc.clock():
            self.svc.store.remove_wait(self.run_id, job.id, step.id)
            self._waits.pop(key, None)
            if wait.kind != "retry":
                self.emit("timer.fired", job_id=job.id, step_id=step.id, due_at=wait.due_at)
            return {"kind": "retry" if wait.kind == "retry" else "timer", "due_at": wait.due_at, "events": list(wait.events),
                    "waited_since": wait.created_at}
        raise _JobWaiting()

    # calling a step -------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        r = self.result
        statuses = {j: s for j, s in r.jobs.items() if j in self.plan.selected}
        r.waits = list(self._waits.values())
        if r.interrupt is None and self.svc.cancel.is_set():
            r.interrupt = self.svc.cancel.why()  # a signal during the last step still interrupts the run
        if r.interrupt is not None:
            r.status = RunStatus.CANCELLED if r.interrupt == "cancel" else RunStatus.INTERRUPTED
        elif any(s == JobStatus.WAITING for s in statuses.values()):
            r.status = RunStatus.WAITING
        elif any(s in (JobStatus.FAILED, JobStatus.BLOCKED, JobStatus.CANCELLED) for s in statuses.values()):
            r.status = RunStatus.FAILED
        else:
            r.status = RunStatus.SUCCESS
        return r

    def cleanup(self, status: RunStatus) -> list[Path]:
        policy = self.flow.workspace.cleanup_policy
        if policy == "always" and status not in (RunStatus.WAITING,) or (policy == "on_success" and status == RunStatus.SUCCESS):
            return remove_run_dirs(self.inp.workspace_root, self.flow.id, self.run_id)
        return []
