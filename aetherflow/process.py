"""Child processes: own process group, complete or stated capture, TERM → grace → KILL.

This is the only module that imports ``subprocess``. Everything that starts a command (the
``external.process`` step, ``{command: [...]}`` secrets) goes through ``run_process``.

Contract
--------
* ``spawn`` starts ``argv`` (``shell=True`` only when asked: ``/bin/sh -c STRING``) in a new
  process group (``process_group=0``, so the group id is the child's pid), with stdin from
  ``/dev/null`` (or a file descriptor the caller gives), only fds 0-2 inherited, an explicit ``env`` and ``cwd``.
* ``run_process`` supervises one command without threads: a ``selectors`` loop over the output
  pipes and a pidfd for the leader's exit (event driven, so a short command costs well under a
  millisecond of supervision). Output is read as it comes, so any amount is captured without
  deadlock; ``max_capture_kb`` keeps the *last* KiB of each stream and says so
  (``*_truncated`` plus the total ``*_bytes``).
* Timeout, deadline or cancel: ``killpg(TERM)``; the whole group gets ``kill_grace`` seconds to
  leave (checked in ``/proc``, zombies excluded); then ``killpg(KILL)``; then the pipes are
  drained for at most ``drain_timeout`` seconds (an escaped process that still holds a pipe
  cannot hang us) and the leader is reaped. The leader stays an unreaped zombie until the very
  end, which keeps its pid (= the group id) from being recycled while we still signal it.
* A leader that exits on its own is *not* followed by a group kill: a command may legitimately
  start a daemon. Only timeout, cancel and the death of the runner stop the whole group.

Parent death (the runner is SIGKILLed)
--------------------------------------
Two mechanisms; the first is the default because it costs microseconds per command:

1. ``ProcessWatchdog``: one small helper process per runner process, started lazily on first
   use (``python -I -S aetherflow/_reaper.py``, its own process group, ignores INT/HUP/TERM).
   It holds the read end of a pipe whose only write end is in the runner (close-on-exec, so no
   child inherits it). Right after a command starts, its group is registered
   (``+ PGID GRACE``); after the leader exited and
   before it is reaped it is unregistered (``- PGID``). When the runner dies for any reason the
   kernel closes the write end; the watchdog reads EOF, sends TERM to every group still
   registered, waits up to each group's grace and sends KILL: grandchildren die too. If the
   watchdog itself dies the next write fails with EPIPE and a new one is started and told every
   live group. Per command this is two short ``write`` calls; the one start (~1 ms in the
   runner, the interpreter boots in parallel) is paid once per runner.
2. ``PR_SET_PDEATHSIG`` (``parent_death_signal=True``): a ``preexec_fn`` sets SIGKILL as the
   child's parent-death signal through ``prctl`` and re-checks ``getppid()`` to close the race
   with a parent that died during ``fork``. It covers only the direct child, and a
   ``preexec_fn`` forces a full ``fork`` instead of ``vfork``: measured +1.7 ms per command in
   a runner with the CLI's libraries loaded (+5 ms at 300 MB RSS), and it is unsafe when other
   threads hold locks. ``run_process`` therefore uses it only when no watchdog can be started
   (for example ``sys.executable`` is empty), unless the caller asks for it explicitly.

Known limits: a process that leaves the group (``setsid``) escapes both mechanisms; a process
forked *without exec* from the runner (``multiprocessing`` with the fork start method) keeps the
watchdog pipe open until it exits; there are a few microseconds between ``fork`` and the
registration of the group in which a SIGKILL of the runner leaves the new group unwatched.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

from aetherflow.errors import ExitCode, Interrupted

__all__ = [
    "Cancellation",
    "ProcessResult",
    "ProcessWatchdog",
    "StreamMode",
    "default_watchdog",
    "interrupted",
    "run_process",
    "spawn",
    "terminate_group",
    "which",
]

StreamMode = Literal["inherit", "capture", "file", "discard"]
STREAM_MODES: frozenset[str] = frozenset({"inherit", "capture", "file", "discard"})

_PR_SET_PDEATHSIG = 1
_READ_CHUNK = 65536


class Cancellation(Protocol):
    """What ``run_process`` needs from a cancel token (``context.CancelToken`` fits)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessResult:
    """How a command ended. ``returncode`` is negative for a signal (``-9``), None when the
    command never started (cancelled or out of time before spawning) or could not be reaped.
    ``stdout``/``stderr`` are None unless that stream was captured."""

    returncode: int | None
    stdout: str | None
    stderr: str | None
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int
    stderr_bytes: int
    timed_out: bool
    cancelled: bool
    pid: int | None
    duration_seconds: float
    log_file: str | None
    #: the time limit that applied (the smaller of timeout and deadline), in seconds
    limit_seconds: float | None = None

    @property
    def started(self) -> bool:
        return self.pid is not None


def interrupted(reason: str | None, message: str) -> Interrupted:
    """The ``Interrupted`` error for a cancel token's reason (``"SIGINT"`` → exit 130)."""
    code = ExitCode.SIGINT if reason == "SIGINT" else ExitCode.SIGTERM
    return Interrupted(message, signal_exit=code)


# ---------------------------------------------------------------------------------------------
# parent-death signal (prctl) and the watchdog process


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only for this fallback (no watchdog): 1-2 ms to import

    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


def _parent_death_preexec(parent_pid: int) -> Callable[[], None] | None:
    prctl = _prctl()
    if prctl is None:
        return None
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


#: the helper program, run as a file (not imported) with ``python -I -S``
_REAPER = Path(__file__).with_name("_reaper.py")


class ProcessWatchdog:
    """A helper process that kills registered process groups when this process dies.

    ``register(pgid, grace)`` before relying on it, ``unregister(pgid)`` once the group's
    leader has exited (before reaping it). Thread-safe. Nothing is started until the first
    ``start()``/``register()``; ``close()`` ends the helper (it kills what is still registered).
    See the module docstring for the design.
    """

    def __init__(self, executable: str | None = None) -> None:
        self._executable = sys.executable if executable is None else executable
        self._lock = threading.Lock()
        self._groups: dict[int, float] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._wfd: int | None = None
        self._broken = False  # could not be started: do not retry on every command
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_after_fork(ref))

    @property
    def pid(self) -> int | None:
        """The helper's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> bool:
        """Start the helper if needed. False when it cannot run (then nothing is watched)."""
        with self._lock:
            return self._ensure()

    def register(self, pgid: int, grace: float) -> bool:
        with self._lock:
            self._groups[pgid] = max(0.0, float(grace))
            return self._send(f"+ {pgid} {self._groups[pgid]:.3f}\n".encode())

    def unregister(self, pgid: int) -> None:
        with self._lock:
            if self._groups.pop(pgid, None) is not None:
                self._send(f"- {pgid}\n".encode())

    def close(self, timeout: float = 10.0) -> None:
        """Close the pipe: the helper kills any group still registered and exits."""
        with self._lock:
            proc = self._proc
            self._discard()
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)

    # internals (call with the lock held) ------------------------------------------------------
    def _ensure(self) -> bool:
        if self._wfd is not None:
            return True
        if self._broken or not self._executable or not _REAPER.is_file():
            return False
        rfd, wfd = os.pipe()  # both close-on-exec: no command ever inherits the write end
        try:
            self._proc = subprocess.Popen(
                [self._executable, "-I", "-S", str(_REAPER)],
                stdin=rfd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                process_group=0,
                cwd="/",
                env={},
            )
        except OSError:
            os.close(wfd)
            self._broken = True
            return False
        finally:
            os.close(rfd)
        self._wfd = wfd
        state = "".join(f"+ {pg} {grace:.3f}\n" for pg, grace in self._groups.items())
        if state and not self._write(state.encode()):
            return self._ensure()
        return True

    def _send(self, line: bytes) -> bool:
        if not self._ensure():
            return False
        if self._write(line):
            return True
        return self._ensure()  # restarted: the full state was sent again

    def _write(self, data: bytes) -> bool:
        assert self._wfd is not None
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._wfd, view)
                view = view[n:]
            return True
        except OSError:  # EPIPE: the helper died; start another one
            self._discard()
            return False

    def _discard(self) -> None:
        if self._wfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._wfd)
            self._wfd = None
        if self._proc is not None:
            self._proc.poll()
            self._proc = None

    def _forget(self) -> None:
        """In a forked child: drop the parent's pipe so the parent's death is still seen."""
        if self._wfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._wfd)
        self._wfd = None
        self._proc = None
        self._groups.clear()
        self._lock = threading.Lock()


def _forget_after_fork(ref: weakref.ref[ProcessWatchdog]) -> None:
    wd = ref()
    if wd is not None:
        wd._forget()


@functools.cache
def _watchdog_for(pid: int) -> ProcessWatchdog:
    return ProcessWatchdog()


def default_watchdog() -> ProcessWatchdog:
    """The watchdog of this OS process. One per process is the right number: it watches the
    process's own death. (A forked child gets a fresh one.)"""
    return _watchdog_for(os.getpid())


# ---------------------------------------------------------------------------------------------
# process groups


def _live_members(pgid: int) -> list[int] | None:
    """Pids in group ``pgid`` that are not zombies, from /proc; None when /proc is unreadable."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    members: list[int] = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in (b"Z", b"X") and fields[2] == str(pgid).encode():
            members.append(int(name))
    return members


def group_alive(pgid: int) -> bool:
    """True while a non-zombie process is in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    members = _live_members(pgid)
    return True if members is None else bool(members)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def terminate_group(pgid: int, grace: float, *, poll: float = 0.05) -> bool:
    """TERM the group, wait up to ``grace`` seconds for it to be empty, then KILL it.
    Returns True when KILL was needed. Blocks; ``run_process`` has its own non-blocking copy
    of this sequence so it can keep draining pipes meanwhile."""
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + max(0.0, grace)
    while group_alive(pgid):
        if time.monotonic() >= end:
            _signal_group(pgid, signal.SIGKILL)
            return True
        time.sleep(poll)
    return False


def spawn(
    argv: Sequence[str] | str,
    *,
    shell: bool = False,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    stdout: int | IO[bytes] | None,
    stderr: int | IO[bytes] | None,
    parent_death_signal: bool = True,
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a command in its own process group (group id = its pid). Raises ``OSError``
    when it cannot be started (not found, not executable, bad cwd).

    ``parent_death_signal`` sets SIGKILL as the child's parent-death signal; note that Linux
    sends it when the *thread* that called ``spawn`` ends, so call it from a thread that
    outlives the child (``run_process`` does)."""
    if shell:
        if not isinstance(argv, str):
            raise TypeError("shell=True takes the command as one string")
        args: list[str] = ["/bin/sh", "-c", argv]
    else:
        if isinstance(argv, str):
            raise TypeError("without shell=True, pass the command as an argv list")
        args = [str(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
    preexec = _parent_death_preexec(os.getpid()) if parent_death_signal else None
    child_env = dict(env)
    found = None if shell else which(args[0], child_env)

    def start(executable: str | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            executable=executable,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=child_env,
            close_fds=True,
            process_group=0,
            preexec_fn=preexec,
        )

    if found is not None:
        try:
            return start(found)
        except OSError:
            pass  # not runnable after all (say ENOEXEC): let the child search, and report, as exec does
    return start(None)


def which(name: str, env: Mapping[str, str]) -> str | None:
    """The file ``exec`` would run for a bare command name under ``env``'s ``PATH`` (else the
    default path), looked up here: otherwise the child, suspended parent and all (vfork), tries
    ``execve`` in every ``PATH`` directory before the right one, about 20 µs a miss. ``None``
    when ``name`` has a slash, when the search depends on the child's working directory (an
    empty or relative ``PATH`` entry) or when nothing executable is found: the child then
    searches, and reports a failure, exactly as before."""
    if not name or "/" in name:
        return None
    for directory in os.get_exec_path(env):
        if not os.path.isabs(directory):
            return None
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK, effective_ids=_EFFECTIVE_IDS) and os.path.isfile(candidate):
            return candidate
    return None


_EFFECTIVE_IDS = os.access in os.supports_effective_ids  # exec checks the effective user


# ---------------------------------------------------------------------------------------------
# output sinks


class _Capture:
    """Keeps a stream in memory: everything, or the last ``limit`` bytes."""

    __slots__ = ("limit", "buf", "total")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if self.limit is not None and len(self.buf) > 2 * self.limit + _READ_CHUNK:
            del self.buf[: len(self.buf) - self.limit]

    def finish(self) -> tuple[str, bool]:
        data = bytes(self.buf)
        truncated = self.limit is not None and self.total > self.limit
        if self.limit is not None and len(data) > self.limit:
            data = data[len(data) - self.limit :]
        if truncated:  # do not start in the middle of a UTF-8 sequence
            skip = 0
            while skip < min(3, len(data)) and 0x80 <= data[skip] <= 0xBF:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", "replace"), truncated


class _Copy:
    """Copies a stream to a text stream that has no usable file descriptor."""

    __slots__ = ("stream", "decoder", "total")

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self.write(self.decoder.decode(data))

    def write(self, text: str) -> None:
        if not text:
            return
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not kill the step
            self.stream.write(text)
            self.stream.flush()

    def finish(self) -> None:
        self.write(self.decoder.decode(b"", final=True))


class _MaskedLines:
    """A text stream writing whole lines to another stream with secrets masked. It has no
    ``fileno``, so the process layer copies the child's output through it instead of handing the
    child the real stderr (``log: inherit`` must not print a secret either)."""

    _MAX_PENDING = 64 * 1024

    def __init__(self, target: IO[str], mask: Callable[[str], str]) -> None:
        self._target = target
        self._mask = mask
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending or len(self._pending) > self._MAX_PENDING:
            head, sep, self._pending = self._pending.rpartition("\n")
            if not sep:  # one huge line: mask what we have
                head, self._pending = self._pending, ""
            self._emit(head + sep)
        return len(text)

    def flush(self) -> None:  # partial lines wait for their end (a secret may straddle chunks)
        pass

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""

    def _emit(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._target.write(self._mask(text))
            self._target.flush()


def _stream_fd(stream: IO[str]) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
    return fd


def _open_pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _leader_exited(pid: int) -> bool:
    """Fallback without pidfd: has the leader exited? Does not reap it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# ---------------------------------------------------------------------------------------------
# run_process


def run_process(
    argv: Sequence[str] | str,
    *,
    shell: bool = False,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    timeout: float | None = None,
    deadline: float | None = None,
    cancel: Cancellation | None = None,
    kill_grace: float = 5.0,
    stdout_mode: StreamMode = "capture",
    stderr_mode: StreamMode = "capture",
    file_path: str | os.PathLike[str] | None = None,
    max_capture_kb: int | None = None,
    inherit_stream: IO[str] | None = None,
    poll: float = 0.05,
    drain_timeout: float = 2.0,
    watchdog: ProcessWatchdog | None = None,
    parent_death_signal: bool | None = None,
    on_output: Callable[[bytes], None] | None = None,
    inherit_mask: Callable[[str], str] | None = None,
    on_stream: Callable[[str, bytes], None] | None = None,
    stdin: int | None = None,
) -> ProcessResult:
    """Run one command to completion, timeout or cancel, and say how it ended.

    ``inherit_mask`` (optional) masks ``inherit`` output line by line on its way to the stream.

    ``on_output`` (optional) sees every chunk read from a captured pipe, for progress display;
    ``on_stream`` (optional) sees each with its stream's name (``stdout``, ``stderr``), and an
    empty chunk (``""``, ``b""``) at least every ``poll`` seconds while the command runs, so
    that it can pass on what it holds back without a thread of its own.
    ``stdin`` (optional): a file descriptor the command reads (default ``/dev/null``).

    ``timeout`` (seconds from now) and ``deadline`` (a ``time.monotonic()`` value): the
    earlier wins. ``cancel`` is polled every ``poll`` seconds. Stream modes: ``capture``
    (memory; the last ``max_capture_kb`` KiB when set, with the truncation stated),
    ``file`` (appended to ``file_path``; both streams may share it), ``inherit`` (to
    ``inherit_stream``, default ``sys.stderr`` — never to the runner's stdout), ``discard``.
    Raises ``OSError`` when the command cannot be started, ``ValueError`` for bad arguments.
    """
    for mode in (stdout_mode, stderr_mode):
        if mode not in STREAM_MODES:
            raise ValueError(f"unknown stream mode {mode!r}")
    if "file" in (stdout_mode, stderr_mode) and file_path is None:
        raise ValueError("stream mode 'file' needs file_path")
    start = time.monotonic()
    limit_at = deadline
    if timeout is not None:
        limit_at = start + timeout if limit_at is None else min(limit_at, start + timeout)
    limit_seconds = None if limit_at is None else max(0.0, limit_at - start)
    log_file = str(file_path) if "file" in (stdout_mode, stderr_mode) else None

    def not_started(*, timed_out: bool, cancelled: bool) -> ProcessResult:
        return ProcessResult(
            returncode=None,
            stdout="" if stdout_mode == "capture" else None,
            stderr="" if stderr_mode == "capture" else None,
            stdout_truncated=False,
            stderr_truncated=False,
            stdout_bytes=0,
            stderr_bytes=0,
            timed_out=timed_out,
            cancelled=cancelled,
            pid=None,
            duration_seconds=0.0,
            log_file=log_file,
            limit_seconds=limit_seconds,
        )

    if cancel is not None and cancel.is_set():
        return not_started(timed_out=False, cancelled=True)
    if limit_at is not None and start >= limit_at:
        return not_started(timed_out=True, cancelled=False)

    guard = default_watchdog() if watchdog is None else watchdog
    watched = guard.start()
    use_pdeathsig = (not watched) if parent_death_signal is None else parent_death_signal
    limit_bytes = None if max_capture_kb is None else max(0, int(max_capture_kb)) * 1024
    stream: IO[str] = sys.stderr if inherit_stream is None else inherit_stream

    with contextlib.ExitStack() as stack:
        if inherit_mask is not None and "inherit" in (stdout_mode, stderr_mode):
            masked = _MaskedLines(stream, inherit_mask)
            stack.callback(masked.close)  # runs last: the final partial line, masked
            stream = masked  # type: ignore[assignment]
        sinks: dict[str, _Capture | _Copy] = {}
        file_fd: list[int] = []

        def target(mode: str, name: str) -> int:
            if mode == "capture":
                sinks[name] = _Capture(limit_bytes)
                return subprocess.PIPE
            if mode == "discard":
                return subprocess.DEVNULL
            if mode == "file":
                if not file_fd:
                    assert file_path is not None
                    Path(file_path).parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(
                        file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
                    )
                    stack.callback(os.close, fd)
                    file_fd.append(fd)
                return file_fd[0]
            inherited = _stream_fd(stream)
            if inherited is not None:
                return inherited
            sinks[name] = _Copy(stream)
            return subprocess.PIPE

        out_target = target(stdout_mode, "stdout")
        err_target = target(stderr_mode, "stderr")
        proc = spawn(
            argv,
            shell=shell,
            cwd=cwd,
            env=env,
            stdout=out_target,
            stderr=err_target,
            parent_death_signal=use_pdeathsig,
            stdin=stdin,
        )
        pid = proc.pid
        registered = watched and guard.register(pid, kill_grace)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                stack.callback(f.close)
        try:
            state = _supervise(proc, sinks, limit_at, cancel, kill_grace, poll, drain_timeout, on_output, on_stream)
        except BaseException:
            _signal_group(pid, signal.SIGKILL)  # the caller is going away: leave nothing behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(drain_timeout)
            if registered and proc.returncode is not None:
                guard.unregister(pid)
            raise
        if state.exited:
            if registered:
                guard.unregister(pid)  # before reaping: the zombie still holds the group id
            returncode: int | None = proc.wait()
        else:
            returncode = None  # unkillable leader (uninterruptible sleep): stays watched
        return _result(state, sinks, returncode, pid, start, log_file, limit_seconds)
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack does not swallow)


def _result(
    state: _LoopState,
    sinks: Mapping[str, _Capture | _Copy],
    returncode: int | None,
    pid: int,
    start: float,
    log_file: str | None,
    limit_seconds: float | None,
) -> ProcessResult:
    captured: dict[str, tuple[str, bool, int]] = {}
    for name, sink in sinks.items():
        if isinstance(sink, _Copy):
            sink.finish()
        else:
            text, truncated = sink.finish()
            captured[name] = (text, truncated, sink.total)
    out = captured.get("stdout")
    err = captured.get("stderr")
    return ProcessResult(
        returncode=returncode,
        stdout=out[0] if out else None,
        stderr=err[0] if err else None,
        stdout_truncated=out[1] if out else False,
        stderr_truncated=err[1] if err else False,
        stdout_bytes=out[2] if out else 0,
        stderr_bytes=err[2] if err else 0,
        timed_out=state.reason == "timeout",
        cancelled=state.reason == "cancel",
        pid=pid,
        duration_seconds=round((state.exit_time or time.monotonic()) - start, 6),
        log_file=log_file,
        limit_seconds=limit_seconds,
    )


@dataclass(slots=True)
class _LoopState:
    exited: bool = False
    exit_time: float | None = None
    reason: str | None = None  # "timeout" | "cancel"
    phase: str = "run"  # run → term → killed
    kill_at: float = 0.0
    killed_at: float = 0.0
    drain_until: float | None = None


def _supervise(
    proc: subprocess.Popen[bytes],
    sinks: Mapping[str, _Capture | _Copy],
    limit_at: float | None,
    cancel: Cancellation | None,
    kill_grace: float,
    poll: float,
    drain_timeout: float,
    on_output: Callable[[bytes], None] | None = None,
    on_stream: Callable[[str, bytes], None] | None = None,
) -> _LoopState:
    """The event loop: read pipes, notice the leader's exit, run the kill sequence."""
    st = _LoopState()
    pid = proc.pid
    next_tick = time.monotonic() + poll
    sel = selectors.DefaultSelector()
    pidfd = _open_pidfd(pid)
    open_pipes = 0
    try:
        for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if f is not None:
                os.set_blocking(f.fileno(), False)
                sel.register(f.fileno(), selectors.EVENT_READ, name)
                open_pipes += 1
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ, None)
        fallback_delay = 0.001
        while True:
            now = time.monotonic()
            if not st.exited and pidfd is None and _leader_exited(pid):
                st.exited, st.exit_time = True, now
            if st.phase == "run" and not st.exited:
                if cancel is not None and cancel.is_set():
                    st.reason = "cancel"
                elif limit_at is not None and now >= limit_at:
                    st.reason = "timeout"
                if st.reason is not None:
                    _signal_group(pid, signal.SIGTERM)
                    st.phase, st.kill_at = "term", now + max(0.0, kill_grace)
            if st.phase == "term" and (now >= st.kill_at or (st.exited and not group_alive(pid))):
                _signal_group(pid, signal.SIGKILL)
                st.phase, st.killed_at = "killed", now
            if st.exited and st.phase != "term":
                if st.drain_until is None:
                    st.drain_until = now + drain_timeout
                if open_pipes == 0 or now >= st.drain_until:
                    return st
            if st.phase == "killed" and not st.exited and now >= st.killed_at + drain_timeout:
                return st  # the leader does not die even from SIGKILL (D state)

            if on_stream is not None and now >= next_tick:
                on_stream("", b"")
                next_tick = now + poll
            waits: list[float] = []
            if not st.exited:
                if st.phase == "run":
                    if cancel is not None or on_stream is not None:
                        waits.append(poll)
                    if limit_at is not None:
                        waits.append(limit_at - now)
                elif st.phase == "killed":
                    waits.append(st.killed_at + drain_timeout - now)
                if pidfd is None:
                    waits.append(fallback_delay)
                    fallback_delay = min(fallback_delay * 2, poll)
            if st.phase == "term":
                waits.append(min(poll, st.kill_at - now))
            if st.drain_until is not None:
                waits.append(st.drain_until - now)
            wait = max(0.0, min(waits)) if waits else None

            for key, _ in sel.select(wait):
                if key.data is None:
                    sel.unregister(key.fd)
                    st.exited, st.exit_time = True, time.monotonic()
                    continue
                try:
                    chunk = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    sinks[key.data].feed(chunk)
                    if on_output is not None:
                        on_output(chunk)
                    if on_stream is not None:
                        on_stream(key.data, chunk)
                else:
                    sel.unregister(key.fd)
                    open_pipes -= 1
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
