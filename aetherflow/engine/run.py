"""The executor: runs one run of a flow from a ``Plan``. It never prints; it records and emits.

Algorithm
1. Seed the template scope with restored jobs and steps (outputs from the store).
2. Schedule jobs in topological order (file order breaks ties), up to ``max_parallel_jobs`` at
   once. A job runs when every ``depends_on`` job ended SUCCESS; if one FAILED, BLOCKED or was
   CANCELLED it is BLOCKED; else if one was SKIPPED it is SKIPPED (``upstream skipped``);
   ``depends_on_policy: all_done`` runs it whatever the upstream outcome. A job whose upstream
   is WAITING stays PENDING. A job's ``when`` false skips it; ``locks.scope: job`` takes the
   job lock around it.
3. Each job that runs is a ``JobRunner.run`` (``engine/job.py``: its steps in order, each
   step's attempts, retries, waits and routing).
4. The run ends WAITING if a job waits, else FAILED if a job failed or was blocked, else
   SUCCESS; a cancel, a signal or the run's own time limit ends it CANCELLED / INTERRUPTED /
   TIMED_OUT. Cleanup policy runs last.
5. A store that fails under the run (``StateError``: unreachable, lost, or the run taken over by
   another executor) stops it: the cancel token is set (running steps' process groups are
   stopped as on SIGTERM, no step starts) and the error goes up to the caller once every job
   thread has ended.

The executor builds its collaborators once and gives each only what it needs: the recorder
(events to the store's history and the observers), the lock service (``with_lock``), the step
caller (contexts, threads, timeouts) and the job runner.
"""

from __future__ import annotations

from pathlib import Path

from aetherflow.context import RUN_TIMEOUT
from aetherflow.engine.calls import CallEnv, StepCaller
from aetherflow.engine.job import WHEN_FALSE, CancelCheck, JobRunner, when
from aetherflow.engine.locking import LockService, holder_text
from aetherflow.engine.output import OutputLog
from aetherflow.engine.recorder import Recorder
from aetherflow.engine.results import (
    backoff_delay,
    error_text,
    restore_job_outputs,
    restore_outputs,
)
from aetherflow.engine.services import RunInputs, RunResult, RunState, Services
from aetherflow.errors import Interrupted, LockBusyError, StateError
from aetherflow.model import JobSpec, JobStatus, RunStatus
from aetherflow.state.store import STORE_LOST, Lock, LockRecord, job_lock_key, run_labels
from aetherflow.template import base_scope, run_scope
from aetherflow.workspace import remove_run_dirs

__all__ = ["WHEN_FALSE", "Executor", "RunInputs", "RunResult", "Services", "backoff_delay"]


class Executor:
    def __init__(self, inputs: RunInputs, svc: Services) -> None:
        self.inp = inputs
        self.svc = svc
        self.flow = inputs.flow
        self.run_id = inputs.run.run_id
        self.plan = inputs.plan
        store = svc.store
        self.state = RunState(store.waits(self.run_id), store.pending_events(self.run_id))
        self.result = self.state.result
        self.rec = Recorder(store, run_id=self.run_id, flow_id=self.flow.id, clock=svc.clock, observers=svc.emit,
                            labels=run_labels(inputs.run))
        locks = LockService(store, self.rec, pid=svc.pid, host=svc.host, clock=svc.clock)
        self.output = OutputLog(store, self.run_id, svc.clock)
        self.calls = StepCaller(svc.registry, CallEnv(
            run_id=self.run_id, flow_id=self.flow.id, flow_file=self.flow.file, layout=self.flow.workspace.layout,
            env=inputs.env, params=inputs.params, connectors=inputs.connectors, log=svc.log, mask=inputs.mask,
            cancel=svc.cancel, locks=locks, inline_wait_max=svc.inline_wait_max, clock=svc.clock, output=self.output,
            history=lambda: tuple(store.history(self.run_id)),
        ), self.rec)
        run = run_scope(self.run_id, inputs.run.created_at, inputs.run.attempt)
        scope = base_scope(env=inputs.env, flow_id=self.flow.id, params=inputs.params, secrets=inputs.secrets, run=run)
        scope["jobs"] = self.state.jobs_scope
        self.check_cancel = CancelCheck(svc)
        self.jobs = JobRunner(inputs, svc, self.state, self.rec, self.calls, self.check_cancel, scope)
        self._jobs = {j.id: j for j in self.flow.jobs}  # FlowSpec.job() scans: O(jobs) per lookup
        self._store_error: StateError | None = None  # the first store failure under the run

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
            self.output.close()
        if self._store_error is not None:  # seen by a job thread while the others were stopping
            raise self._store_error
        return self._finish()

    def _seed_scope(self) -> None:
        by_job: dict[str, dict[str, object]] = {}
        for (jid, sid), rec in self.plan.stored_steps.items():
            if (jid, sid) in self.plan.restored_steps:
                by_job.setdefault(jid, {})[sid] = {"status": rec.status, "outcome": rec.outcome, "outputs": restore_outputs(rec)}
        for jid, jrec in self.plan.stored_jobs.items():
            if jid in self.plan.restored_jobs or (jid not in self.plan.selected and jrec.status == JobStatus.SUCCESS):
                self.state.jobs_scope[jid] = {
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
                self.check_cancel()
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
                            with self.state.lock:
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
                    self.check_cancel()
            finally:
                if self.svc.cancel.is_set():
                    for fut in running:
                        fut.cancel()

    def _start_job(self, job: JobSpec, decision: str, reason: str | None) -> None:
        try:
            self._start_job_unguarded(job, decision, reason)
        except StateError as exc:
            self.svc.cancel.set(STORE_LOST)  # every other job's steps stop too
            with self.state.lock:
                self._store_error = self._store_error or exc
            raise

    def _start_job_unguarded(self, job: JobSpec, decision: str, reason: str | None) -> None:
        if decision == "BLOCKED":
            self.jobs.block(job, reason)
            return
        if decision == "SKIPPED":
            self.jobs.skip(job, reason or "upstream skipped")
            return
        if job.when is not None and not when(job.when, self.jobs.scope_for(job, {})):
            self.jobs.skip(job, WHEN_FALSE)
            return
        lock: Lock | None = None
        if self.flow.locks.scope == "job":
            try:
                lock = self._job_lock(job)
            except LockBusyError as exc:
                self.jobs.lock_busy(job, error_text(exc), job_lock_key(self.flow.id, job.id))
                return
        try:
            self.jobs.run(job)
        finally:
            if lock is not None:
                self.svc.store.remove_lock(lock.key, self.run_id,
                                           self.rec.observed(self.rec.event("lock.released", job_id=job.id, lock=lock.key)))
                lock.release()

    def _job_lock(self, job: JobSpec) -> Lock:
        key = job_lock_key(self.flow.id, job.id)
        store = self.svc.store
        lock = store.lock(key)
        wait = self.flow.locks.wait_seconds
        if not lock.acquire(0):
            if wait > 0:
                store.sync()  # what was written without an fsync must not wait on another process
            if wait <= 0 or not lock.acquire(wait):
                raise LockBusyError(f"job lock '{key}' is held by {holder_text(store.lock_holder(key))}")
        store.record_lock(
            LockRecord(name=key, run_id=self.run_id, pid=self.svc.pid, host=self.svc.host, since=self.svc.clock(), kind="job"),
            self.rec.observed(self.rec.event("lock.acquired", job_id=job.id, lock=key)),
        )
        return lock

    # end of run -----------------------------------------------------------------------------
    def _finish(self) -> RunResult:
        r = self.result
        statuses = {j: s for j, s in r.jobs.items() if j in self.plan.selected}
        r.waits = list(self.state.waits.values())
        if r.interrupt is None and self.svc.cancel.is_set():
            r.interrupt = self.svc.cancel.why()  # a signal during the last step still interrupts the run
        if r.interrupt is not None:
            r.status = {"cancel": RunStatus.CANCELLED, RUN_TIMEOUT: RunStatus.TIMED_OUT}.get(r.interrupt, RunStatus.INTERRUPTED)
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
