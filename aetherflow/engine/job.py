"""One job of a run, and each of its steps' lifecycle (the scheduler, ``engine/run.py``, decides
when a job runs).

Per step, in order: restored (stored SUCCESS/SKIPPED) → its outputs re-enter the scope and it
is routed as recorded; ``when`` false → SKIPPED; otherwise render the inputs, record RUNNING
(attempt n), call the step (``engine/calls.py``), then record the result and its outputs in one
transaction. A failure retries per ``retry:``; a delay above the inline limit parks the step
WAITING with a due time. A WAITING result parks the step on its events or timer. The result
is routed by ``on_outcome`` (continue | skip_job | fail | complete_job) and
``on_no_data: skip_job``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aetherflow import template
from aetherflow.context import RUN_TIMEOUT
from aetherflow.engine.calls import StepCaller
from aetherflow.engine.recorder import Recorder
from aetherflow.engine.results import (
    backoff_delay,
    error_text,
    iso,
    reason_of,
    restore_job_outputs,
    restore_outputs,
    wait_text,
)
from aetherflow.engine.services import RunInputs, RunState, Services
from aetherflow.errors import Interrupted, StepError, StepTimeoutError, TemplateError
from aetherflow.model import (
    MASKED_KEYS_FIELD,
    STEP_SKIPPED,
    STEP_WAITING,
    JobSpec,
    JobStatus,
    Masked,
    RetrySpec,
    StepResult,
    StepSpec,
    StepStatus,
    thaw,
)
from aetherflow.state.store import StepRecord, StepWrite, WaitRecord
from aetherflow.workspace import JobWorkspace, ensure, job_workspace

if TYPE_CHECKING:
    from aetherflow.expressions import Expr

__all__ = ["CANCEL_POLL_SECONDS", "WHEN_FALSE", "CancelCheck", "JobRunner", "when"]

CANCEL_POLL_SECONDS = 0.05

#: the recorded reason of a job or step whose `when` was false (such a step did not execute)
WHEN_FALSE = "condition false"


def when(expr: Expr, scope: Mapping[str, Any]) -> bool:
    from aetherflow import expressions  # only flows with `when` import it

    return bool(expressions.evaluate(expr, scope))


class _JobWaiting(Exception):
    """Internal: the job parks WAITING."""


class _JobFailed(Exception):
    """Internal: the job ends FAILED with this reason."""


class CancelCheck:
    """Stop at a step boundary: on a signal (the run's cancel token) at once; on ``aetherflow
    cancel`` from another process, asked of the store at most every ``CANCEL_POLL_SECONDS`` (a
    step that took longer is always followed by a look)."""

    def __init__(self, svc: Services) -> None:
        self._cancel = svc.cancel
        self._should_cancel = svc.should_cancel
        self._next_poll = 0.0

    def __call__(self, *, store: bool = True) -> None:
        if self._cancel.is_set():
            raise Interrupted(f"run stopped ({self._cancel.why()})")
        if not store:  # before a restored step nothing starts: the next executed step asks the store
            return
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + CANCEL_POLL_SECONDS
        reason = self._should_cancel()
        if reason is not None:
            self._cancel.set("cancel")
            raise Interrupted(f"run cancelled: {reason}")


class JobRunner:
    """Runs, skips, blocks or fails one job at a time (one instance serves every job of a run;
    parallel jobs share it, their state is per call)."""

    def __init__(self, inputs: RunInputs, svc: Services, state: RunState, recorder: Recorder, calls: StepCaller,
                 check_cancel: CancelCheck, base_scope: Mapping[str, Any]) -> None:
        self.inp = inputs
        self.svc = svc
        self.store = svc.store
        self.state = state
        self.rec = recorder
        self.calls = calls
        self.check_cancel = check_cancel
        self.plan = inputs.plan
        self.run_id = inputs.run.run_id
        self.base_scope = base_scope
        #: parallel flows: what follows a job's last step is not known, so its result syncs
        self.one_job_at_a_time = inputs.flow.max_parallel_jobs <= 1

    # -- scope ---------------------------------------------------------------------------------
    def scope_for(self, job: JobSpec, steps_scope: Mapping[str, Any], ws: JobWorkspace | None = None) -> dict[str, Any]:
        scope = dict(self.base_scope)
        entry = self.state.jobs_scope.get(job.id) or {}
        scope["job"] = {"id": job.id, "outputs": entry.get("outputs", {})}
        scope["steps"] = steps_scope
        if ws is not None:
            scope["workspace"] = ws.as_scope()
        return scope

    def _attempt_of(self, job_id: str, step_id: str) -> int:
        rec = self.plan.stored_steps.get((job_id, step_id))
        return rec.attempt if rec else 0

    def _stored_job_outputs(self, outputs: Mapping[str, Any]) -> dict[str, Any] | None:
        """Job outputs as stored: masked, with the keys that carried a secret remembered (so a
        template reading them after a resume fails instead of seeing ``***``)."""
        if not outputs:
            return None
        masked, keys = self.inp.mask_outputs(outputs)
        if keys:
            masked[MASKED_KEYS_FIELD] = list(keys)
        return masked

    # -- a job that does not run -------------------------------------------------------------
    def block(self, job: JobSpec, reason: str | None) -> None:
        self.state.set_job_status(job.id, JobStatus.BLOCKED, reason)
        self.store.set_job(self.run_id, job.id, JobStatus.BLOCKED,
                           self.rec.observed(self.rec.event("job.blocked", job_id=job.id, reason=reason)),
                           reason=reason, finished_at=self.svc.clock())

    def skip(self, job: JobSpec, reason: str, from_index: int = 0) -> None:
        now = self.svc.clock()
        writes = self._skip_writes(job, from_index, reason, now)
        self.state.set_job_status(job.id, JobStatus.SKIPPED, reason)
        entry = self.state.jobs_scope[job.id]
        for w in writes:
            entry["steps"][w.step_id] = {"status": StepStatus.SKIPPED, "outcome": None, "outputs": {}}
        ev = self.rec.observed(self.rec.event("job.skipped", job_id=job.id, reason=reason))
        if writes:
            self.store.set_steps(self.run_id, writes, None)
        self.store.set_job(self.run_id, job.id, JobStatus.SKIPPED, ev, reason=reason, outcome=entry.get("outcome"),
                           outputs=self._stored_job_outputs(entry.get("outputs") or {}), finished_at=now)

    def lock_busy(self, job: JobSpec, error: str, lock: str) -> None:
        """The job lock was not acquired within wait_seconds: the job fails (its first step to run
        carries the message naming the holder); independent jobs go on."""
        error = self.inp.mask(error)
        self.rec.emit("lock.busy", job_id=job.id, lock=lock, error=error)
        first = next((s for s in job.steps if (job.id, s.id) not in self.plan.restored_steps), job.steps[0])
        self._fail_step(job, first, self._attempt_of(job.id, first.id) + 1, error)
        self.state.set_job_status(job.id, JobStatus.FAILED, error)
        self.store.set_job(self.run_id, job.id, JobStatus.FAILED,
                           self.rec.observed(self.rec.event("job.finished", job_id=job.id, status="FAILED", reason=error)),
                           reason=error, finished_at=self.svc.clock())

    def _skip_writes(self, job: JobSpec, from_index: int, reason: str, now: float) -> list[StepWrite]:
        return [
            StepWrite(job_id=job.id, step_id=s.id, status=StepStatus.SKIPPED, attempt=self._attempt_of(job.id, s.id),
                      reason=reason, finished_at=now)
            for s in job.steps[from_index:]
            if (job.id, s.id) not in self.plan.restored_steps
        ]

    def _skip_rest(self, job: JobSpec, from_index: int, reason: str) -> None:
        writes = self._skip_writes(job, from_index, reason, self.svc.clock())
        if writes:
            self.store.set_steps(self.run_id, writes, None)
        entry = self.state.jobs_scope[job.id]["steps"]
        for w in writes:
            entry[w.step_id] = {"status": StepStatus.SKIPPED, "outcome": None, "outputs": {}}

    # -- a job that runs -----------------------------------------------------------------------
    def run(self, job: JobSpec) -> None:
        now = self.svc.clock()
        ws = ensure(job_workspace(self.inp.workspace_root, self.inp.flow.id, job.id, self.run_id, self.inp.flow.workspace.layout))
        outputs: dict[str, Any] = {}
        stored_job = self.plan.stored_jobs.get(job.id)
        if stored_job is not None and stored_job.outputs:
            outputs.update(restore_job_outputs(stored_job))
        steps_info: dict[str, Any] = {}
        with self.state.lock:
            self.state.jobs_scope[job.id] = {"status": JobStatus.RUNNING, "outcome": None, "skip_reason": None,
                                             "outputs": outputs, "steps": steps_info}
            self.state.result.jobs[job.id] = JobStatus.RUNNING
        self.store.set_job(self.run_id, job.id, JobStatus.RUNNING, self.rec.observed(self.rec.event("job.started", job_id=job.id, workspace=str(ws.path), artifacts=str(ws.artifacts))),
                           started_at=now)
        steps_scope: dict[str, Any] = {}
        scope = self.scope_for(job, steps_scope, ws)
        scope["job"]["outputs"] = outputs
        try:
            for idx, step in enumerate(job.steps):
                self.check_cancel(store=(job.id, step.id) not in self.plan.restored_steps)
                action = self._run_step(job, step, idx, scope, steps_scope, steps_info, outputs, ws)
                if action is None:
                    continue
                kind, reason = action
                if kind == "skip_job":
                    self.skip(job, reason, idx + 1)
                    return
                if kind == "complete_job":
                    self._skip_rest(job, idx + 1, reason)
                    break
                raise _JobFailed(reason)
        except _JobWaiting:
            self.state.set_job_status(job.id, JobStatus.WAITING)
            self.store.set_job(self.run_id, job.id, JobStatus.WAITING, self.rec.observed(self.rec.event("job.waiting", job_id=job.id)),
                               outputs=self._stored_job_outputs(outputs))
            return
        except _JobFailed as exc:
            reason = str(exc)
            self.state.set_job_status(job.id, JobStatus.FAILED, reason)
            self.store.set_job(
                self.run_id, job.id, JobStatus.FAILED,
                self.rec.observed(self.rec.event("job.finished", job_id=job.id, status="FAILED", reason=reason)),
                reason=reason, outputs=self._stored_job_outputs(outputs),
                outcome=self.state.jobs_scope[job.id].get("outcome"), finished_at=self.svc.clock(),
            )
            return
        except Interrupted:
            why = self.svc.cancel.why() or "interrupted"
            status = JobStatus.CANCELLED if why == "cancel" else JobStatus.FAILED
            reason = "cancelled" if why == "cancel" else "the run timed out" if why == RUN_TIMEOUT else f"interrupted ({why})"
            self.state.set_job_status(job.id, status, reason)
            self.store.set_job(
                self.run_id, job.id, status,
                self.rec.observed(self.rec.event("job.finished", job_id=job.id, status=status, reason=reason)),
                reason=reason, outputs=self._stored_job_outputs(outputs), finished_at=self.svc.clock(),
            )
            raise
        self.state.set_job_status(job.id, JobStatus.SUCCESS)
        self.store.set_job(
            self.run_id, job.id, JobStatus.SUCCESS,
            self.rec.observed(self.rec.event("job.finished", job_id=job.id, status="SUCCESS",
                                             duration=round(self.svc.clock() - now, 6))),
            outputs=self._stored_job_outputs(outputs), outcome=self.state.jobs_scope[job.id].get("outcome"),
            finished_at=self.svc.clock(),
        )

    # -- one step ------------------------------------------------------------------------------
    def _run_step(self, job: JobSpec, step: StepSpec, idx: int, scope: dict[str, Any], steps_scope: dict[str, Any],
                  steps_info: dict[str, Any], job_outputs: dict[str, Any], ws: JobWorkspace) -> tuple[str, str] | None:
        """Restore, skip or execute one step; ``None`` to go on, else (action, reason)."""
        key = (job.id, step.id)
        restored = self.plan.restored_steps.get(key)
        if restored is not None:
            outs = restore_outputs(restored)
            status, outcome, reason = restored.status, restored.outcome, restored.reason
            self._promote(step, outs, scope, job_outputs, restored_ok=True)
        elif step.when is not None and not when(step.when, scope):
            outs, status, outcome, reason = {}, StepStatus.SKIPPED, "skipped", WHEN_FALSE
            self.store.set_step(
                self.run_id,
                StepWrite(job_id=job.id, step_id=step.id, status=status, attempt=self._attempt_of(*key), outcome=outcome,
                          reason=reason, finished_at=self.svc.clock()),
                self.rec.observed(self.rec.event("step.skipped", job_id=job.id, step_id=step.id, reason=reason)),
            )
        else:
            # a result followed by a synchronous commit before anything else can run needs
            # no fsync of its own (docs/state.md): the next step's RUNNING makes both durable.
            # Run one job at a time, that holds after a job's last step too: the next job's
            # first step, a skipped or blocked job, or the run's end writes synchronously,
            # and a wait for a job lock syncs first (Executor._job_lock)
            nxt = job.steps[idx + 1] if idx + 1 < len(job.steps) else None
            more = self.one_job_at_a_time if nxt is None else (job.id, nxt.id) not in self.plan.restored_steps
            res, outs = self._execute(job, step, scope, ws, job_outputs, more=more)
            status = res.status
            outcome = res.outcome or ("skipped" if res.status == STEP_SKIPPED else "success")
            reason = res.reason or (outs.get("reason") if isinstance(outs.get("reason"), str) else None)
        steps_scope[step.id] = outs
        steps_info[step.id] = {"status": status, "outcome": outcome, "outputs": outs}
        if reason != WHEN_FALSE or status != StepStatus.SKIPPED:
            self.state.jobs_scope[job.id]["outcome"] = outcome  # a job's outcome is its last *executed* step's
        return _route(step, status, outcome, reason)

    def _promote(self, step: StepSpec, outs: Mapping[str, Any], scope: dict[str, Any], job_outputs: dict[str, Any], *,
                 restored_ok: bool = False) -> None:
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

    def _execute(self, job: JobSpec, step: StepSpec, scope: dict[str, Any], ws: JobWorkspace, job_outputs: dict[str, Any], *,
                 more: bool = False) -> tuple[StepResult, dict[str, Any]]:
        """Every attempt of one step, until it succeeds, waits, or fails for good."""
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
        retry = retry_policy(step, st.meta.retry)
        try:
            inputs = template.render(step.inputs, scope)
        except TemplateError as exc:
            self._fail_step(job, step, attempt + 1, f"inputs: {error_text(exc)}")
            raise _JobFailed(f"step '{step.id}' failed: inputs: {error_text(exc)}") from exc
        while True:
            attempt += 1
            started = self.svc.clock()
            self.store.set_step(
                self.run_id,
                StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.RUNNING, attempt=attempt, started_at=started),
                self.rec.observed(self.rec.event("step.started", job_id=job.id, step_id=step.id, attempt=attempt, type=step.type)),
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
                metadata = thaw(res.metadata) or None
                extra = {"metadata": metadata} if metadata else {}
                self.store.set_step(
                    self.run_id,
                    StepWrite(job_id=job.id, step_id=step.id, status=res.status, attempt=attempt, outcome=outcome,
                              outputs=masked, masked_keys=masked_keys, reason=reason_of(res, masked),
                              started_at=started, finished_at=now, metadata=metadata),
                    self.rec.observed(self.rec.event("step.finished", job_id=job.id, step_id=step.id, attempt=attempt,
                                                     status=res.status, outcome=outcome, duration=round(now - started, 6),
                                                     **extra)),
                    sync=not more,
                )
                self.svc.hooks("step.finished", {"job": job.id, "step": step.id, "attempt": attempt})
                return res, outs
            if attempt < retry.max_attempts:
                self._retry_later(job, step, retry, attempt, error, started)
                continue
            self._fail_step(job, step, attempt, error, started=started)
            raise _JobFailed(f"step '{step.id}' failed: {error}")

    def _retry_later(self, job: JobSpec, step: StepSpec, retry: RetrySpec, attempt: int, error: str,
                     started: float) -> None:
        """Record the failed attempt, then sleep its backoff delay in-process, or park the step
        WAITING with the retry due when the delay is over the inline limit."""
        delay = backoff_delay(retry, attempt)
        now = self.svc.clock()
        self.store.set_step(
            self.run_id,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.FAILED, attempt=attempt, error=error,
                      started_at=started, finished_at=now),
            self.rec.observed(self.rec.event("step.retry", job_id=job.id, step_id=step.id, attempt=attempt, error=error,
                                             delay=round(delay, 3))),
        )
        if delay > self.svc.inline_wait_max:
            due = now + delay
            wait = WaitRecord(run_id=self.run_id, job_id=job.id, step_id=step.id, kind="retry", due_at=due, created_at=now)
            self.store.set_wait(
                wait,
                StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.WAITING, attempt=attempt, error=error,
                          reason=f"retry due at {iso(due)}", started_at=started, finished_at=now,
                          attempt_status=StepStatus.FAILED),
                self.rec.observed(self.rec.event("step.waiting", job_id=job.id, step_id=step.id, attempt=attempt, kind="retry",
                                                 due_at=due)),
            )
            self.state.waits[(job.id, step.id)] = wait
            raise _JobWaiting()
        if self.svc.cancel.wait(delay):
            raise Interrupted("interrupted during retry delay")

    def _fail_step(self, job: JobSpec, step: StepSpec, attempt: int, error: str, *, started: float | None = None) -> None:
        now = self.svc.clock()
        error = self.inp.mask(error)
        self.store.set_step(
            self.run_id,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.FAILED, attempt=attempt, error=error,
                      started_at=started, finished_at=now),
            self.rec.observed(self.rec.event("step.failed", job_id=job.id, step_id=step.id, attempt=attempt, error=error)),
        )
        self.state.result.failed_steps.append((job.id, step.id, error))

    def _park(self, job: JobSpec, step: StepSpec, attempt: int, res: StepResult, started: float) -> None:
        now = self.svc.clock()
        if not res.events and res.due_at is None:
            raise StepError("a WAITING result must name events or a due time", code="step.bad_wait")
        wait = WaitRecord(
            run_id=self.run_id, job_id=job.id, step_id=step.id, kind="event" if res.events else "timer",
            events=res.events, due_at=res.due_at, created_at=now,
        )
        metadata = thaw(res.metadata) or None
        extra = {"metadata": metadata} if metadata else {}
        self.store.set_wait(
            wait,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.WAITING, attempt=attempt, reason=wait_text(wait),
                      started_at=started, outputs=thaw(res.outputs) or None, metadata=metadata),
            self.rec.observed(self.rec.event("step.waiting", job_id=job.id, step_id=step.id, attempt=attempt, kind=wait.kind,
                                             events=list(wait.events), due_at=wait.due_at, **extra)),
        )
        self.state.waits[(job.id, step.id)] = wait

    def _resume_wait(self, job: JobSpec, step: StepSpec, stored: StepRecord) -> StepResult | dict[str, Any]:
        """A stored WAITING step: an event completes it, a due timer wakes it, else it keeps waiting."""
        key = (job.id, step.id)
        wait = self.state.waits.get(key)
        for ev in self.state.events:
            if (ev.job_id, ev.step_id) == key:
                return self._complete_with_event(job, step, stored, ev.id, ev.name, ev.data)
        if wait is None:
            return {"kind": "lost"}
        if wait.due_at is not None and wait.due_at <= self.svc.clock():
            self.store.remove_wait(self.run_id, job.id, step.id)
            self.state.waits.pop(key, None)
            if wait.kind != "retry":
                self.rec.emit("timer.fired", job_id=job.id, step_id=step.id, due_at=wait.due_at)
            return {"kind": "retry" if wait.kind == "retry" else "timer", "due_at": wait.due_at, "events": list(wait.events),
                    "waited_since": wait.created_at}
        raise _JobWaiting()

    def _complete_with_event(self, job: JobSpec, step: StepSpec, stored: StepRecord, event_id: int, name: str,
                             data: Mapping[str, Any]) -> StepResult:
        """A received event completes the waiting step: SUCCESS, outcome = the event's name,
        outputs = its data (keys that carried a secret when it was stored stay masked)."""
        outputs = thaw(data)
        outputs = outputs if isinstance(outputs, dict) else {"data": outputs}
        carried = tuple(outputs.pop(MASKED_KEYS_FIELD, ()))  # masked when the event was stored
        masked, masked_keys = self.inp.mask_outputs(outputs)
        masked_keys = tuple(dict.fromkeys((*carried, *masked_keys)))
        for k in carried:
            outputs[k] = Masked(f"{job.id}.{step.id}.{k}")
        self.store.set_step(
            self.run_id,
            StepWrite(job_id=job.id, step_id=step.id, status=StepStatus.SUCCESS, attempt=stored.attempt, outcome=name,
                      outputs=masked, masked_keys=masked_keys, finished_at=self.svc.clock()),
            self.rec.observed(self.rec.event("step.finished", job_id=job.id, step_id=step.id, attempt=stored.attempt,
                                             status="SUCCESS", outcome=name, via="event")),
        )
        self.store.consume_event(event_id)
        self.store.remove_wait(self.run_id, job.id, step.id)
        self.state.waits.pop((job.id, step.id), None)
        return StepResult("SUCCESS", outputs, outcome=name)


def retry_policy(step: StepSpec, type_default: Mapping[str, Any] | None) -> RetrySpec:
    """The step's retry policy: its type's default (``register_step(retry=...)``) with the
    fields the flow's ``retry:`` sets laid over it, field by field."""
    if not type_default:
        return step.retry
    return RetrySpec.from_fields({**type_default, **step.retry_fields})


def _route(step: StepSpec, status: str, outcome: str | None, reason: str | None) -> tuple[str, str] | None:
    """What the step's result means for its job: ``on_outcome``, then ``on_no_data``."""
    action = step.on_outcome.get(outcome) if outcome else None
    if action is None and status == StepStatus.SKIPPED and step.on_no_data == "skip_job":
        action = "skip_job"
    if action is None or action == "continue":
        return None
    if action == "skip_job":
        return ("skip_job", reason or f"step '{step.id}' skipped the job (outcome {outcome})")
    if action == "complete_job":
        return ("complete_job", f"job completed by step '{step.id}' (outcome {outcome})")
    return ("fail", f"step '{step.id}' outcome '{outcome}' is routed to fail")

