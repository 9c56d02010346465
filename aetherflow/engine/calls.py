"""Calling step implementations: instantiate (both call styles), run in a reusable worker
thread, honour cancel and ``timeout_seconds``, check the result, run nested steps.

A step gets its inputs read-only (``model.read_only``: still dicts and lists). Its result is
checked before anything is recorded: a ``StepResult``; an outcome the step type declares; a
WAITING result only from a step type registered ``waits=True``, waiting only for events it
declares as outcomes (``resume --event`` completes it with that outcome); outputs and metadata
JSON (a value that is not fails the step naming its key and type) and bounded in size."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aetherflow.context import CancelToken, MaskingAdapter, StepContext
from aetherflow.engine.locking import LockService
from aetherflow.engine.output import OutputLog
from aetherflow.engine.recorder import Recorder
from aetherflow.engine.results import normalize_result
from aetherflow.errors import Interrupted, StepError, StepTimeoutError
from aetherflow.events import Event
from aetherflow.model import STEP_WAITING, JobSpec, StepResult, StepSpec, freeze, read_only, thaw
from aetherflow.registry import Registry, StepType
from aetherflow.workspace import JobWorkspace

MAX_OUTPUT_BYTES = 1024 * 1024
MAX_METADATA_BYTES = 64 * 1024
INTERRUPT_GRACE = 8.0


class _Worker:
    """One daemon thread running step calls; replaced when a call is abandoned (timeout)."""

    def __init__(self) -> None:
        import queue  # only flows with a step that needs this thread import it

        self._q: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event, threading.Event] | None] = (
            queue.SimpleQueue()
        )
        self._t = threading.Thread(target=self._loop, name="aetherflow-step", daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, box, done, also = item
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the engine
                box["error"] = exc
            done.set()
            also.set()

    def submit(self, fn: Callable[[], Any], also: threading.Event) -> tuple[dict[str, Any], threading.Event]:
        box: dict[str, Any] = {}
        done = threading.Event()
        self._q.put((fn, box, done, also))
        return box, done

    def stop(self) -> None:
        self._q.put(None)


def _always_in_job_thread(st: StepType) -> bool:
    """Inline step types, and those that stop by themselves on a cancel or their deadline."""
    return st.meta.inline or getattr(st.cls, "supervises_itself", False) is True


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnv:
    """What every step context of one run shares."""

    run_id: str
    flow_id: str
    flow_file: str
    layout: Mapping[str, Any]
    env: Mapping[str, str]
    params: Mapping[str, Any]
    connectors: Mapping[str, Any]
    log: logging.Logger
    mask: Callable[[str], str]
    cancel: CancelToken  # the run's: set by a signal or a cancel
    locks: LockService
    inline_wait_max: float
    clock: Callable[[], float]
    output: OutputLog | None = None  # where the attempts' captured output is kept
    history: Callable[[], tuple[Event, ...]] | None = None  # the run's history so far (read-only)


class StepCaller:
    """Calls steps for one run. One worker thread per job thread, reused for every step."""

    def __init__(self, registry: Registry, env: CallEnv, recorder: Recorder) -> None:
        self.registry = registry
        self.env = env
        self.recorder = recorder
        self._step_types: dict[str, StepType] = {}
        self._legacy: dict[type, bool] = {}
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def stop(self) -> None:
        for w in self._workers:
            w.stop()

    def step_type(self, name: str) -> StepType:
        st = self._step_types.get(name)
        if st is None:
            found = self.registry.step(name)
            if found is None:
                raise StepError(f"unknown step type '{name}'", code="flow.unknown_step_type")
            st = self._step_types[name] = found
        return st

    def check_result(self, st: StepType, res: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The result's outputs (plain), once the result keeps the step type's contract (see
        the module docstring); else ``StepError``: the step fails."""
        if not isinstance(res, StepResult):
            raise StepError(f"step type '{st.name}' returned {type(res).__name__}, not a StepResult", code="step.bad_result")
        declared = st.outcomes_for(inputs)
        if res.outcome is not None and res.outcome not in declared:
            raise StepError(
                f"step type '{st.name}' returned outcome '{res.outcome}', which it does not declare ({', '.join(declared)})",
                code="step.undeclared_outcome",
            )
        if res.status == STEP_WAITING:
            if not st.meta.waits:
                raise StepError(f"step type '{st.name}' returned WAITING but is not registered as a waiting step "
                                "(register_step(..., waits=True))", code="step.undeclared_wait")
            unknown = [e for e in res.events if e not in declared]
            if unknown:
                raise StepError(f"step type '{st.name}' waits for event(s) {', '.join(unknown)} it does not declare as "
                                f"outcomes ({', '.join(declared)})", code="step.undeclared_event")
        outs = thaw(res.outputs)
        _check_json(outs, "output", MAX_OUTPUT_BYTES, "step.outputs_too_large",
                    "write large data to a file in the workspace")
        if res.metadata:
            _check_json(thaw(res.metadata), "metadata", MAX_METADATA_BYTES, "step.metadata_too_large",
                        "metadata labels the run; keep it to a few small values")
        return outs  # type: ignore[no-any-return]

    # waiting --------------------------------------------------------------------------------

    def call(self, st: StepType, job: JobSpec, step: StepSpec, inputs: Any, attempt: int, ws: JobWorkspace,
             wakeup: Mapping[str, Any] | None) -> StepResult:
        env = self.env
        token = CancelToken(env.cancel)
        deadline = time.monotonic() + step.timeout_seconds if step.timeout_seconds else None
        ctx = StepContext(
            run_id=env.run_id,
            flow_id=env.flow_id,
            job_id=job.id,
            step_id=step.id,
            attempt=attempt,
            env=env.env,
            params=env.params,
            connectors=env.connectors,
            ws=ws,
            log=MaskingAdapter(env.log, f"{job.id}.{step.id}: ", env.mask),
            cancel=token,
            deadline=deadline,
            mask=env.mask,
            flow_file=env.flow_file,
            layout=env.layout,
            wakeup=freeze(wakeup) if wakeup else None,
            invoke=self.invoke,
            locks=env.locks.for_step(job.id, step.id),
            inline_wait_max=env.inline_wait_max,
            clock=env.clock,
            progress=self._progress_reporter(job.id, step.id, attempt),
            history=env.history,
            output=env.output.writer(job.id, step.id, attempt) if env.output is not None else None,
        )
        # read-only, yet dicts and lists (as aetherflow-core steps expect)
        try:
            if self._in_job_thread(st, step, inputs):
                return self._call_inline(st, step.id, job.id, read_only(inputs), ctx)
            return self._call_in_worker(st, step.id, job.id, read_only(inputs), ctx, step.timeout_seconds)
        finally:
            ctx.release_held_locks()  # what ctx.acquire_lock took and the step did not release
            if env.output is not None:
                env.output.finish(job.id, step.id, attempt)

    def _in_job_thread(self, st: StepType, step: StepSpec, inputs: Any) -> bool:
        """Whether the call stays in the job's thread. The worker thread is there so that
        ``timeout_seconds`` and a signal can stop *waiting* for a step; a step that cannot keep
        them waiting does not need it, and the hand-off costs two thread wake-ups a step.

        - ``inline`` step types return at once.
        - A step class with ``supervises_itself = True`` watches ``ctx.cancel`` and
          ``ctx.deadline`` itself and returns soon after either fires (``external.process``: its
          supervision loop kills the process group), with or without ``timeout_seconds``.
        - A step type that may stay here only for some inputs says so with a static method
          ``returns_at_once(inputs, in_job_thread)`` (``with_lock`` not waiting for its lock,
          around steps that may stay here); never asked with ``timeout_seconds``, which only
          the worker thread can enforce on such a step."""
        if _always_in_job_thread(st):
            return True
        check = getattr(st.cls, "returns_at_once", None)
        if check is None or step.timeout_seconds:
            return False
        return bool(check(inputs, self._type_in_job_thread))

    def _type_in_job_thread(self, name: str) -> bool:
        found = self.registry.step(name)
        return found is not None and _always_in_job_thread(found)

    def _progress_reporter(self, job_id: str, step_id: str, attempt: int) -> Callable[[str], None]:
        """``ctx.progress``: a transient ``step.progress`` event to observers (not the store),
        at most a few per second."""
        last = [0.0]

        def report(text: str) -> None:
            now = time.monotonic()
            if now - last[0] < 0.25:
                return
            last[0] = now
            line = self.env.mask(str(text).splitlines()[-1] if text else "")[:200]
            self.recorder.notify(self.recorder.event("step.progress", job_id=job_id, step_id=step_id, attempt=attempt, line=line))

        return report

    def _instantiate(self, st: StepType, step_id: str, job_id: str, inputs: Any, ctx: StepContext) -> Callable[[], Any]:
        inst = st.cls(step_id, inputs, ctx, job_id)
        validate = getattr(inst, "validate", None)
        legacy = self._legacy.get(st.cls)
        if legacy is None:  # inspect.signature once per class, not per step
            legacy = self._legacy[st.cls] = st.legacy_run
        if legacy:
            def call() -> Any:
                if validate is not None:
                    validate()
                return normalize_result(inst.run())
        else:
            def call() -> Any:
                if validate is not None:
                    validate()
                return normalize_result(inst.run(ctx, inputs))
        return call

    def _call_in_worker(self, st: StepType, step_id: str, job_id: str, inputs: Any, ctx: StepContext, timeout: float | None) -> StepResult:
        """Call the step in the worker thread and wait for it, a cancel, or the timeout. On a
        cancel or timeout the step gets ``INTERRUPT_GRACE`` seconds to stop its processes."""
        fn = self._instantiate(st, step_id, job_id, inputs, ctx)
        wake = threading.Event()  # set by the worker when done, or by a cancel
        box, done = self._worker().submit(fn, wake)
        ctx.cancel.wake(wake)
        try:
            wake.wait(timeout)
            if not done.is_set():
                if self.env.cancel.is_set():
                    if not done.wait(INTERRUPT_GRACE):
                        self._abandon_worker()
                        raise Interrupted(f"step '{step_id}' interrupted ({self.env.cancel.why()})")
                else:
                    ctx.cancel.set("timeout")
                    if not done.wait(INTERRUPT_GRACE):
                        self._abandon_worker()
                    err = box.get("error")
                    if isinstance(err, StepTimeoutError):
                        raise err
                    raise StepTimeoutError(f"step '{step_id}' timed out after {timeout:g} s")
        finally:
            ctx.cancel.unwake(wake)
        return self._result_of(box, step_id)

    def _call_inline(self, st: StepType, step_id: str, job_id: str, inputs: Any, ctx: StepContext) -> StepResult:
        """An ``inline`` step type: called here, in the job's thread (it returns at once)."""
        box: dict[str, Any] = {}
        try:
            box["value"] = self._instantiate(st, step_id, job_id, inputs, ctx)()
        except (Exception, SystemExit, GeneratorExit) as exc:  # noqa: BLE001 - mapped as for a worker
            box["error"] = exc
        return self._result_of(box, step_id)

    def _result_of(self, box: Mapping[str, Any], step_id: str) -> StepResult:
        if "error" in box:
            err = box["error"]
            if isinstance(err, Interrupted) or (self.env.cancel.is_set() and not isinstance(err, StepTimeoutError)):
                raise Interrupted(str(err)) from err
            if isinstance(err, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                # a step cannot end the runner: without a signal this is just a failed step
                raise StepError(f"step '{step_id}' raised {type(err).__name__}({err})", code="step.exit") from err
            raise err
        return box["value"]  # type: ignore[no-any-return]

    def _worker(self) -> _Worker:
        """One worker thread per job thread, reused for every step (cheap per step)."""
        w: _Worker | None = getattr(self._local, "worker", None)
        if w is None:
            w = self._local.worker = _Worker()
            with self._lock:
                self._workers.append(w)
        return w

    def _abandon_worker(self) -> None:
        """The worker is stuck in a step that ignored cancel/timeout: leave it (daemon) and
        use a fresh one for later steps."""
        w = getattr(self._local, "worker", None)
        if w is not None:
            w.stop()
        self._local.worker = None

    def invoke(self, parent: StepContext, spec: Mapping[str, Any], index: int) -> StepResult:
        """Run a nested step (``with_lock``) in the caller's thread with the caller's context."""
        type_name = str(spec.get("type"))
        st = self.step_type(type_name)
        sid = str(spec.get("id") or f"{parent.step_id}.{index}")
        inputs = read_only(spec.get("inputs") or {})
        fn = self._instantiate(st, sid, parent.job_id, inputs, parent)
        res = fn()
        self.check_result(st, res, inputs)
        if res.status == STEP_WAITING:  # whatever the nesting step does with it: it would hold its lock
            raise StepError(f"step '{sid}' ({type_name}) returned WAITING inside '{parent.step_id}': a nested step "
                            "cannot wait", code="step.wait_in_lock")
        return res  # type: ignore[no-any-return]

    # end of run -----------------------------------------------------------------------------


def _check_json(value: dict[str, Any], what: str, limit: int, code: str, hint: str) -> None:
    """A step's outputs or metadata must be JSON (no value turned into a string behind the
    author's back) and at most ``limit`` bytes of UTF-8."""
    if not value:
        return
    bad = _not_json(value, "")
    if bad is not None:
        path, kind = bad
        raise StepError(f"step {what} '{path}' is {kind}, not JSON: use strings, numbers, booleans, null, lists "
                        "and mappings with string keys", code=f"step.{what}_not_json")
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > limit:
        raise StepError(f"step {what} is {size} bytes, over the {limit} byte limit; {hint}", code=code)


def _not_json(value: Any, path: str) -> tuple[str, str] | None:
    """(path, what) of the first value in ``value`` that JSON cannot hold, or None."""
    if isinstance(value, (str, int)) or value is None:  # bool is an int
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"the float {value}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return (path or "(top level)", f"a mapping with a key of type '{type(k).__name__}' ({k!r})")
            found = _not_json(v, f"{path}.{k}" if path else k)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _not_json(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return (path, f"of type '{name}'")
