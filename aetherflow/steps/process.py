"""Built-in step ``external.process``: run a command, supervised (docs/processes.md).

The command runs through ``aetherflow.process.run_process`` in its own process group: a
timeout (the smaller of the ``timeout_seconds`` input and the step's deadline) or a cancel
kills the whole group (TERM, ``kill_grace_seconds``, KILL). Success is an accepted exit code
plus the ``success`` file checks. ``idempotency`` skips work already done (``marker``) or
publishes an output directory atomically (``atomic_dir``). ``retry`` repeats the command
inside one attempt of the step (aetherflow-core compatibility); the engine's own ``retry:``
is separate and wraps the whole step.

aetherflow-core spellings are normalised in ``_plan``: ``retry.backoff_seconds`` /
``backoff_multiplier`` / ``max_backoff_seconds`` (the pause grows per inner attempt),
``sleep_seconds``; ``success.require_glob`` / ``required_files`` / ``required_globs`` /
``forbidden_files`` / ``marker_file`` (a string counts as a one-item list, as there);
``idempotency.temp_output_dir`` / ``final_output_dir`` / ``atomic_rename`` (false: merge into
the final directory instead of replacing it); ``success.marker_file`` is the marker of
``strategy: marker`` when no ``marker_path`` is given. As there, every relative path (``cwd``,
``log.file_path``, the ``success`` files, ``marker_path``, the ``atomic_dir`` directories) is
relative to the job's artifacts directory; without ``cwd`` the command runs in the job workspace
(which holds ``artifacts/``).

Captured text goes into the step's outputs, which are limited to 1 MiB: each stream keeps at
most ``max_capture_kb`` KiB (default 1024, the *last* part), and if both streams together
would still not fit, the older parts are dropped as well. Truncation is always stated
(``stdout_truncated``, ``stdout_bytes`` = total bytes produced). Use ``log: {stdout: file}``
to keep everything.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aetherflow.api import (
    STEP_SUCCESS,
    Step,
    StepContext,
    StepError,
    StepResult,
    StepTimeoutError,
    atomic_write,
    register_step,
)
from aetherflow.process import ProcessResult, StreamMode, interrupted, run_process
from aetherflow.workspace import fsync_dir

#: step outputs are stored and limited to 1 MiB by the engine; keep room for the other keys
OUTPUTS_BUDGET = 1024 * 1024 - 16 * 1024
STDERR_TAIL_LINES = 20
_KEEP_ENV = ("PATH", "HOME", "LANG")

_STR_LIST = {"type": "array", "items": {"type": "string"}}
_INT_LIST = {"type": "array", "items": {"type": "integer"}}
# aetherflow-core reads these through its ``_as_list``: a single value counts as a list of one
_STRS = {"oneOf": [{"type": "string"}, _STR_LIST]}
_INTS = {"oneOf": [{"type": "integer"}, _INT_LIST]}
#: upper bound of one pause between inner attempts (a growing backoff stays finite)
MAX_INNER_DELAY = 24 * 3600.0
_MODE = {"enum": ["inherit", "capture", "file", "discard"]}

INPUTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {
            "description": "argv list, or a string (split like a shell would, without a shell, "
            "unless shell: true)",
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": ["string", "number"]}},
            ],
        },
        "args": {"type": "array", "items": {"type": ["string", "number"]}},
        "shell": {"type": "boolean", "default": False},
        "cwd": {"type": "string", "description": "default: the job workspace; a relative cwd is under the job's artifacts directory"},
        "env": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        },
        "inherit_env": {"type": "boolean", "default": True},
        "timeout_seconds": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "kill_grace_seconds": {"type": "number", "minimum": 0, "default": 5},
        "log": {
            "type": "object",
            "properties": {
                "stdout": _MODE,
                "stderr": _MODE,
                "file_path": {"type": "string"},
                "max_capture_kb": {"type": ["integer", "null"], "minimum": 0, "default": 1024},
                "max_capture_bytes": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "success": {
            "type": "object",
            "properties": {
                "exit_codes": {"oneOf": [{"type": "integer"}, {**_INT_LIST, "minItems": 1}]},
                "require_files": _STRS,
                "forbid_files": _STRS,
                "require_glob": {**_STRS, "description": "aetherflow-core: globs that must match (like require_files)"},
                "required_files": _STRS,
                "required_globs": _STRS,
                "forbidden_files": _STRS,
                "marker_file": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "idempotency": {
            "type": "object",
            "properties": {
                "strategy": {"enum": ["none", "marker", "atomic_dir"], "default": "none"},
                "marker_path": {"type": "string"},
                "target_dir": {"type": "string"},
                "skip_if_exists": {"type": "boolean", "default": True},
                "temp_output_dir": {"type": "string"},
                "final_output_dir": {"type": "string"},
                "atomic_rename": {"type": "boolean", "default": True,
                                  "description": "aetherflow-core: false merges the output into the target "
                                  "directory instead of replacing it"},
            },
            "additionalProperties": False,
        },
        "retry": {
            "type": "object",
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "default": 1},
                "delay_seconds": {"type": "number", "minimum": 0, "default": 5},
                "sleep_seconds": {"type": "number", "minimum": 0},
                "backoff_seconds": {"type": "number", "minimum": 0,
                                    "description": "aetherflow-core: first pause (then times backoff_multiplier)"},
                "backoff_multiplier": {"type": "number", "minimum": 0, "default": 1},
                "max_backoff_seconds": {"type": "number", "minimum": 0,
                                        "description": "longest pause; 0 or absent: no limit"},
                "retry_on_exit_codes": _INTS,
                "retry_on_timeout": {"type": "boolean", "default": False},
            },
            "additionalProperties": False,
        },
        "outputs": {"type": "object", "description": "literal values copied into the outputs"},
    },
    "additionalProperties": False,
}


class _Plan(NamedTuple):
    """The inputs, checked and resolved against the workspace. (A NamedTuple: defining a
    frozen dataclass costs about 1.5 ms at import, paid by every run that uses this step.)"""

    argv: tuple[str, ...] | str
    shell: bool
    cwd: Path
    base: Path  # relative file rules are relative to it: the job's artifacts directory
    env: Mapping[str, str]
    timeout: float | None
    kill_grace: float
    stdout_mode: StreamMode
    stderr_mode: StreamMode
    log_path: Path | None
    max_capture_kb: int | None
    exit_codes: frozenset[int]
    require: tuple[str, ...]
    forbid: tuple[str, ...]
    strategy: str
    marker: Path | None
    write_marker: bool
    target: Path | None
    staging: Path | None
    merge_target: bool
    skip_if_exists: bool
    max_attempts: int
    delay: float
    backoff_multiplier: float
    max_backoff: float
    retry_exit_codes: frozenset[int] | None
    retry_on_timeout: bool
    literal_outputs: Mapping[str, Any]


@register_step(
    "external.process",
    inputs_schema=INPUTS_SCHEMA,
    description="Run an external command in its own process group (timeout, capture, "
    "success checks, idempotency).",
)
class ExternalProcess(Step):
    """Run an external command in its own process group, with timeout, capture and checks."""

    required_inputs = frozenset({"command"})
    #: the engine may call it in the job's thread (engine/calls.py): the supervision loop
    #: watches ctx.cancel and ctx.deadline and kills the process group when either fires, and
    #: the pause between inner attempts is a ctx.cancel.wait
    supervises_itself = True

    def run(self, ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
        plan = _plan(ctx, inputs)
        _raise_if_stopped(ctx, self.id)
        skipped = _idempotent_skip(ctx, plan)
        if skipped is not None:
            return skipped
        failure: StepError | None = None
        for attempt in range(1, plan.max_attempts + 1):
            if plan.staging is not None:
                _reset_dir(plan.staging)
            try:
                res = _run_once(ctx, plan)
                failure, retryable = _judge(ctx, plan, res, self.id)
                if failure is None:
                    return _succeed(ctx, plan, res, attempt)
            finally:
                if plan.staging is not None and plan.staging.exists():
                    import shutil  # here and below: only the atomic_dir strategy needs it

                    shutil.rmtree(plan.staging, ignore_errors=True)
            if attempt == plan.max_attempts or not retryable:
                break
            ctx.log.warning(f"attempt {attempt}/{plan.max_attempts} failed: {failure.message}")
            delay = _pause(plan, attempt)
            remaining = ctx.remaining()
            if remaining is not None and remaining <= delay:
                break
            if delay > 0 and ctx.cancel.wait(delay):
                _raise_if_stopped(ctx, self.id)
        assert failure is not None
        raise failure


# ---------------------------------------------------------------------------------------------
# inputs


def _plan(ctx: StepContext, inputs: Mapping[str, Any]) -> _Plan:
    # every relative path is relative to the job's artifacts directory, as in aetherflow-core
    # and in the other built-in file steps; without cwd the command runs in the job workspace
    art = ctx.ws.artifacts
    shell = bool(inputs.get("shell", False))
    argv = _argv(inputs.get("command"), inputs.get("args") or (), shell)
    cwd = _under(art, inputs.get("cwd")) if inputs.get("cwd") else ctx.workspace
    if not cwd.is_dir():
        raise StepError(f"cwd '{cwd}' is not a directory", code="process.bad_cwd")

    log = inputs.get("log") or {}
    out_mode = str(log.get("stdout", "capture"))
    err_mode = str(log.get("stderr", "capture"))
    log_path = None
    if "file" in (out_mode, err_mode):
        log_path = _under(art, log.get("file_path") or f"{ctx.step_id}.log")
    if "max_capture_bytes" in log and "max_capture_kb" not in log:
        max_kb: int | None = math.ceil(int(log["max_capture_bytes"]) / 1024)
    else:
        raw_kb = log.get("max_capture_kb", 1024)
        max_kb = None if raw_kb is None else int(raw_kb)

    success = inputs.get("success") or {}
    require = [p for key in ("require_files", "required_files", "require_glob", "required_globs")
               for p in _as_list(success.get(key))]
    if success.get("marker_file"):
        require.append(success["marker_file"])
    forbid = [p for key in ("forbid_files", "forbidden_files") for p in _as_list(success.get(key))]

    idem = inputs.get("idempotency") or {}
    strategy = str(idem.get("strategy", "none"))
    marker = target = staging = None
    write_marker = True
    merge_target = strategy == "atomic_dir" and idem.get("atomic_rename") is False
    if strategy == "marker":
        if idem.get("marker_path"):
            marker = _under(art, idem["marker_path"])
        elif success.get("marker_file"):
            # aetherflow-core: the command's own marker file (e.g. _SUCCESS) says the work is done;
            # it is checked like require_files and never overwritten
            marker = _under(art, success["marker_file"])
            write_marker = False
        else:
            marker = ctx.ws.manifests / f"{ctx.step_id}.done"
    elif strategy == "atomic_dir":
        target_raw = idem.get("target_dir") or idem.get("final_output_dir")
        if not target_raw:
            raise StepError(
                "idempotency strategy 'atomic_dir' needs target_dir", code="process.bad_inputs"
            )
        target = _under(art, target_raw)
        if idem.get("temp_output_dir"):
            staging = _under(art, idem["temp_output_dir"])
        else:
            key = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:12]
            staging = target.parent / f".{target.name}.staging-{key}"

    retry = inputs.get("retry") or {}
    retry_codes = retry.get("retry_on_exit_codes")
    if "backoff_seconds" in retry:
        delay = float(retry["backoff_seconds"] or 0)
    else:
        delay = float(retry.get("delay_seconds", retry.get("sleep_seconds", 5)))
    env = _child_env(ctx, inputs, staging)
    return _Plan(
        argv=argv,
        shell=shell,
        cwd=cwd,
        base=art,
        env=env,
        timeout=None if inputs.get("timeout_seconds") is None else float(inputs["timeout_seconds"]),
        kill_grace=float(inputs.get("kill_grace_seconds", 5)),
        stdout_mode=_mode(out_mode),
        stderr_mode=_mode(err_mode),
        log_path=log_path,
        max_capture_kb=max_kb,
        exit_codes=frozenset(int(c) for c in _as_list(success.get("exit_codes", (0,)))),
        require=tuple(str(p) for p in require),
        forbid=tuple(str(p) for p in forbid),
        strategy=strategy,
        marker=marker,
        write_marker=write_marker,
        target=target,
        staging=staging,
        merge_target=merge_target,
        # merging into an existing directory is the point of atomic_rename: false, so its
        # existence does not mean the work is done
        skip_if_exists=bool(idem.get("skip_if_exists", not merge_target)),
        max_attempts=max(1, int(retry.get("max_attempts", 1))),
        delay=delay,
        backoff_multiplier=float(retry.get("backoff_multiplier") or 1),
        max_backoff=float(retry.get("max_backoff_seconds") or 0),
        retry_exit_codes=None if retry_codes is None else frozenset(int(c) for c in _as_list(retry_codes)),
        retry_on_timeout=bool(retry.get("retry_on_timeout", False)),
        literal_outputs=dict(inputs.get("outputs") or {}),
    )


def _as_list(value: Any) -> list[Any]:
    """None → [], a single value → [value], a list → itself (aetherflow-core's ``_as_list``)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


def _pause(plan: _Plan, attempt: int) -> float:
    """Seconds to wait after inner attempt ``attempt`` failed: ``delay``, times
    ``backoff_multiplier`` for each later attempt, at most ``max_backoff`` (when set)."""
    try:
        delay = plan.delay * plan.backoff_multiplier ** (attempt - 1)
    except OverflowError:
        delay = math.inf
    if plan.max_backoff > 0:
        delay = min(delay, plan.max_backoff)
    return min(delay, MAX_INNER_DELAY)


def _argv(command: Any, args: Sequence[Any], shell: bool) -> tuple[str, ...] | str:
    extra = [str(a) for a in args]
    if isinstance(command, str):
        parts = None
    elif isinstance(command, Sequence) and command:
        parts = [str(c) for c in command]
    else:
        raise StepError("command must be a non-empty string or list", code="process.bad_inputs")
    if shell:  # one script for /bin/sh -c; a list is joined with spaces, args are quoted
        script = command if parts is None else " ".join(parts)
        return f"{script} {shlex.join(extra)}" if extra else str(script)
    try:
        argv = shlex.split(command) if parts is None else parts
    except ValueError as exc:
        raise StepError(f"cannot split command: {exc}", code="process.bad_inputs") from exc
    if not argv:
        raise StepError("command is empty", code="process.bad_inputs")
    return (*argv, *extra)


def _mode(value: str) -> StreamMode:
    if value == "inherit":
        return "inherit"
    if value == "file":
        return "file"
    if value == "discard":
        return "discard"
    if value == "capture":
        return "capture"
    raise StepError(f"unknown log mode '{value}'", code="process.bad_inputs")


def _under(base: Path, value: Any) -> Path:
    """An absolute path as is, a relative one under ``base``."""
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _child_env(ctx: StepContext, inputs: Mapping[str, Any], staging: Path | None) -> dict[str, str]:
    if inputs.get("inherit_env", True):
        env = dict(ctx.env)
    else:
        env = {k: ctx.env[k] for k in _KEEP_ENV if k in ctx.env}
    env.update(
        AETHERFLOW_RUN_ID=ctx.run_id,
        AETHERFLOW_FLOW_ID=ctx.flow_id,
        AETHERFLOW_JOB_ID=ctx.job_id,
        AETHERFLOW_STEP_ID=ctx.step_id,
        AETHERFLOW_ATTEMPT=str(ctx.attempt),
        AETHERFLOW_WORKSPACE=str(ctx.workspace),
    )
    env.update({str(k): _env_value(v) for k, v in (inputs.get("env") or {}).items()})
    if staging is not None:
        env["AETHERFLOW_STAGING_DIR"] = env["AETHERFLOW_OUTPUT_DIR"] = str(staging)
    return env


# ---------------------------------------------------------------------------------------------
# running and judging


def _raise_if_stopped(ctx: StepContext, step_id: str) -> None:
    why = ctx.cancel.why()
    if ctx.cancel.is_set() and why != "timeout":
        raise interrupted(why, f"step '{step_id}' was stopped ({why}) before its command ran")
    remaining = ctx.remaining()
    if (remaining is not None and remaining <= 0) or why == "timeout":
        raise StepTimeoutError(f"step '{step_id}' timed out before its command ran")


def _tail_reporter(ctx: StepContext) -> Callable[[bytes], None] | None:
    """Report the latest complete output line through ``ctx.progress`` (the live view's tail)."""
    progress = getattr(ctx, "progress", None)
    if progress is None:
        return None
    pending = bytearray()

    def feed(chunk: bytes) -> None:
        pending.extend(chunk[-4096:])
        end = pending.rfind(b"\n")
        if end < 0:
            del pending[:-4096]
            return
        start = pending.rfind(b"\n", 0, end) + 1
        line = bytes(pending[start:end]).decode("utf-8", "replace").strip()
        del pending[: end + 1]
        if line:
            progress(line)

    return feed


def _run_once(ctx: StepContext, plan: _Plan) -> ProcessResult:
    ctx.log.debug(f"running {plan.argv!r} in {plan.cwd}")
    try:
        return run_process(
            plan.argv,
            shell=plan.shell,
            cwd=plan.cwd,
            env=plan.env,
            timeout=plan.timeout,
            deadline=ctx.deadline,
            cancel=ctx.cancel,
            kill_grace=plan.kill_grace,
            stdout_mode=plan.stdout_mode,
            stderr_mode=plan.stderr_mode,
            file_path=plan.log_path,
            max_capture_kb=plan.max_capture_kb,
            inherit_mask=ctx.mask,  # `log: inherit` output is masked too
            on_output=_tail_reporter(ctx),
            on_stream=getattr(ctx, "output", None),
        )
    except OSError as exc:
        shown = plan.argv if isinstance(plan.argv, str) else plan.argv[0]
        raise StepError(
            ctx.mask(f"cannot start '{shown}': {exc.strerror or exc}"), code="process.spawn_failed"
        ) from exc


def _judge(
    ctx: StepContext, plan: _Plan, res: ProcessResult, step_id: str
) -> tuple[StepError | None, bool]:
    """(failure or None, whether another inner attempt may help). Raises on cancel."""
    if res.cancelled:
        why = ctx.cancel.why()
        if why == "timeout":  # the engine's step timer fired first
            return StepTimeoutError(_timeout_message(res, step_id)), False
        raise interrupted(
            why, f"step '{step_id}' was stopped ({why}); its process group was killed"
        )
    if res.timed_out:
        deadline_hit = ctx.remaining() == 0.0
        return StepTimeoutError(_timeout_message(res, step_id)), (
            plan.retry_on_timeout and not deadline_hit
        )
    retryable = plan.retry_exit_codes is None or res.returncode in plan.retry_exit_codes
    if res.returncode not in plan.exit_codes:
        return StepError(
            _exit_message(ctx, plan, res, step_id), code="process.exit_code"
        ), retryable
    problems = _check_files(plan)
    if problems:
        msg = f"step '{step_id}': command succeeded but its outputs are invalid: " + "; ".join(
            problems
        )
        return StepError(ctx.mask(msg), code="process.outputs_invalid"), retryable
    return None, False


def _fmt_seconds(value: float | None) -> str:
    return "?" if value is None else f"{round(value, 1):g}"


def _timeout_message(res: ProcessResult, step_id: str) -> str:
    return (
        f"step '{step_id}' timed out after {_fmt_seconds(res.limit_seconds)} s; "
        f"process group {res.pid} was killed"
    )


def _exit_message(ctx: StepContext, plan: _Plan, res: ProcessResult, step_id: str) -> str:
    code = res.returncode
    accepted = ", ".join(str(c) for c in sorted(plan.exit_codes))
    how = f"exit code {code}"
    if code is not None and code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    msg = f"step '{step_id}': command failed with {how} (accepted: {accepted})"
    tail = _stderr_tail(plan, res)
    if tail:
        msg += f"\nlast lines of stderr:\n{tail}"
    return ctx.mask(msg)


def _stderr_tail(plan: _Plan, res: ProcessResult) -> str:
    text = res.stderr
    if text is None and plan.stderr_mode == "file" and plan.log_path is not None:
        try:
            with open(plan.log_path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 65536))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            text = None
    if not text:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-STDERR_TAIL_LINES:])


def _matches(base: Path, pattern: str, plan: _Plan) -> bool:
    full = os.path.normpath(os.path.join(base, pattern))
    if plan.target is not None and plan.staging is not None:  # not published yet: look in staging
        target = os.path.normpath(plan.target)
        if full == target or full.startswith(target + os.sep):
            full = os.path.normpath(plan.staging) + full[len(target) :]
    if glob.has_magic(full):
        return bool(glob.glob(full, recursive=True))
    return os.path.lexists(full)


def _check_files(plan: _Plan) -> list[str]:
    problems = [
        f"required '{p}' is missing" for p in plan.require if not _matches(plan.base, p, plan)
    ]
    problems += [f"forbidden '{p}' exists" for p in plan.forbid if _matches(plan.base, p, plan)]
    return problems


# ---------------------------------------------------------------------------------------------
# success, outputs, idempotency


def _succeed(ctx: StepContext, plan: _Plan, res: ProcessResult, attempts: int) -> StepResult:
    outputs: dict[str, Any] = dict(plan.literal_outputs)
    outputs.update(
        exit_code=res.returncode,
        attempts=attempts,
        duration_seconds=round(res.duration_seconds, 3),
        pid=res.pid,
    )
    for name, text, truncated, total in (
        ("stdout", res.stdout, res.stdout_truncated, res.stdout_bytes),
        ("stderr", res.stderr, res.stderr_truncated, res.stderr_bytes),
    ):
        if text is not None:
            outputs[name] = text
            outputs[f"{name}_truncated"] = truncated
            outputs[f"{name}_bytes"] = total
    if res.log_file is not None:
        outputs["log_file"] = res.log_file
    _fit_outputs(outputs)
    if plan.target is not None and plan.staging is not None:
        if plan.merge_target:
            _merge_into(plan.staging, plan.target)
        else:
            _publish(plan.staging, plan.target)
        outputs["target_dir"] = str(plan.target)
    if plan.marker is not None:
        outputs["marker_path"] = str(plan.marker)
        if plan.write_marker:
            text = json.dumps(outputs, indent=2, sort_keys=True, default=str, ensure_ascii=False)
            atomic_write(plan.marker, ctx.mask(text) + "\n")
    return StepResult(STEP_SUCCESS, outputs)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))


def _fit_outputs(outputs: dict[str, Any]) -> None:
    """Drop the oldest captured text until the outputs fit the engine's 1 MiB limit."""
    excess = _json_size(outputs) - OUTPUTS_BUDGET
    while excess > 0:
        names = [n for n in ("stdout", "stderr") if outputs.get(n)]
        if not names:
            return
        name = max(names, key=lambda n: len(outputs[n]))
        text: str = outputs[name]
        outputs[name] = text[min(len(text), max(excess, 1024)) :]
        outputs[f"{name}_truncated"] = True
        excess = _json_size(outputs) - OUTPUTS_BUDGET


def _idempotent_skip(ctx: StepContext, plan: _Plan) -> StepResult | None:
    if not plan.skip_if_exists:
        return None
    if plan.marker is not None and plan.marker.exists():
        problems = _check_files(plan)
        if problems:
            ctx.log.warning(f"marker {plan.marker} exists but {'; '.join(problems)}: running again")
            return None
        try:
            stored = json.loads(plan.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = None  # a marker written by another tool (e.g. touch) still means done
        outputs = dict(stored) if isinstance(stored, dict) else {}
        outputs.update(plan.literal_outputs)
        outputs.update(idempotent_skip=True, marker_path=str(plan.marker))
        ctx.log.info(f"marker {plan.marker} exists: not running the command again")
        return StepResult(STEP_SUCCESS, outputs)
    if plan.target is not None and plan.target.exists():
        ctx.log.info(f"target {plan.target} exists: not running the command again")
        outputs = dict(plan.literal_outputs)
        outputs.update(idempotent_skip=True, target_dir=str(plan.target))
        return StepResult(STEP_SUCCESS, outputs)
    return None


def _reset_dir(path: Path) -> None:
    import shutil

    if path.exists() or path.is_symlink():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.mkdir(parents=True)


def _local_staging(staging: Path, target: Path) -> Path:
    """``staging``, or a copy of it beside ``target`` when it lies on another filesystem (an
    explicit temp dir elsewhere), so the moves that follow are renames."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(staging).st_dev == os.stat(target.parent).st_dev:
        return staging
    local = target.parent / f".{target.name}.staging-copy"
    if local.exists():
        shutil.rmtree(local)
    shutil.copytree(staging, local, symlinks=True)
    shutil.rmtree(staging, ignore_errors=True)
    return local


def _merge_into(staging: Path, target: Path) -> None:
    """``atomic_rename: false`` (aetherflow-core): move each top-level entry of the staging dir
    into ``target`` (created if missing), replacing an entry of the same name; other entries of
    ``target`` stay. Each move is a rename; the whole is not atomic."""
    import shutil

    staging = _local_staging(staging, target)
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staging.iterdir()):
        dst = target / entry.name
        old = None
        if dst.exists() or dst.is_symlink():
            old = target / f".{entry.name}.old-{os.getpid()}"
            os.rename(dst, old)
        os.rename(entry, dst)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    fsync_dir(target)
    shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    """Move the staging dir into place with renames (same filesystem), old target last."""
    import shutil

    staging = _local_staging(staging, target)
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    fsync_dir(target.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
