"""What every command shares and none needs typer for: streams, the error → exit code mapping,
logging, signals, and stdout kept clean during a run. Every command module uses them.

An error ends the command with ``SystemExit(code)``: typer (click) lets it through unchanged, and
its test runner records the code, so both ways of invoking a command exit alike.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NoReturn

from aetherflow.errors import AetherflowError, ExitCode, UsageError


def process_env() -> dict[str, str]:
    return dict(os.environ)


def flow_argument(flow: str | None, flow_yaml: str | None, command: str) -> str:
    """The flow file, given as FLOW or as aetherflow-core's ``--flow-yaml FILE`` (once)."""
    if flow and flow_yaml and flow != flow_yaml:
        raise UsageError("give the flow file once: FLOW or --flow-yaml, not both")
    path = flow or flow_yaml
    if not path:
        raise UsageError(f"missing FLOW: aetherflow {command} FLOW.yaml", code="usage.missing_flow")
    return path


#: the logger whose only handler is ``--log-file``'s: what aetherflow writes on stderr goes there too
FILE_LOGGER = "aetherflow.logfile"


def stderr(text: str, *, level: int = logging.INFO) -> None:
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
        to_log_file(text.rstrip("\n"), level)


def to_log_file(text: str, level: int = logging.INFO) -> None:
    """A line for ``--log-file`` only (when it was given)."""
    logger = logging.getLogger(FILE_LOGGER)
    if logger.handlers:
        logger.log(level, text)


def stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def log_line(text: str, *, level: str = "info", log_format: str = "text", **extra: Any) -> None:
    """One message for the operator on stderr: as is, or as a JSON line with ``--log-format json``
    (so that every stderr line is JSON then)."""
    lvl = logging.getLevelName(level.upper())
    lvl = lvl if isinstance(lvl, int) else logging.INFO
    if log_format == "json":
        from aetherflow import render

        sys.stderr.write(render.json_log_line(level, text, **extra) + "\n")
        sys.stderr.flush()
        to_log_file(text, lvl)
    else:
        stderr(text, level=lvl)


def fail(exc: AetherflowError, *, as_json: bool = False, log_format: str = "text") -> NoReturn:
    from aetherflow import render
    from aetherflow.errors import Interrupted

    if as_json:
        stdout(render.dumps(render.error_json(exc)))
    if log_format == "json":
        for rec in render.error_log_records(exc):
            sys.stderr.write(render.dumps_line(rec) + "\n")
        sys.stderr.flush()
        to_log_file(render.error_text(exc), logging.ERROR)
    else:
        stderr(render.error_text(exc), level=logging.ERROR)
    raise SystemExit(int(exc.signal_exit if isinstance(exc, Interrupted) else exc.exit_code))


@contextmanager
def guarded(as_json: bool = False, log_format: str = "text") -> Iterator[None]:
    """Map aetherflow errors to their exit code (one message, no traceback); anything else is
    an internal error: traceback without locals, exit 70."""
    try:
        yield
    except AetherflowError as exc:
        fail(exc, as_json=as_json, log_format=log_format)
    except KeyboardInterrupt:
        log_line("aetherflow: interrupted", level="error", log_format=log_format)
        raise SystemExit(int(ExitCode.SIGINT)) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _is_typer_exit(exc):  # a typer command's own `raise typer.Exit(code)`
            raise
        msg = "aetherflow: internal error (a bug in aetherflow, please report it with this traceback):"
        if log_format == "json":
            log_line(msg + "\n" + traceback.format_exc(), level="critical", log_format=log_format)
        else:
            stderr(msg, level=logging.CRITICAL)
            stderr(traceback.format_exc(), level=logging.CRITICAL)
        raise SystemExit(int(ExitCode.INTERNAL)) from None


def _is_typer_exit(exc: BaseException) -> bool:
    typer = sys.modules.get("typer")  # loaded only when a typer command is running
    return typer is not None and isinstance(exc, typer.Exit)


def _is_fd1(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 1)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While a run executes, nothing may reach stdout (results only, one JSON document with
    ``--json``, silence under cron): ``sys.stdout`` points at stderr, and so does fd 1 when
    ``sys.stdout`` really is fd 1, so children that inherit it (``os.system``) write to stderr
    too. Both are restored on the way out, before results are printed. In-process test runners
    replace ``sys.stdout`` with an object without a file descriptor: then only the object is
    swapped."""
    saved = sys.stdout
    saved_fd: int | None = None
    if _is_fd1(saved):
        try:
            saved.flush()
            sys.stderr.flush()
            saved_fd = os.dup(1)
            os.dup2(2, 1)
        except OSError:  # fd 1 or 2 not open: nothing inheritable to protect
            if saved_fd is not None:
                os.close(saved_fd)
            saved_fd = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        with suppress(OSError, ValueError):
            saved.flush()  # writes through a kept reference to the old stdout still go to stderr
        with suppress(OSError, ValueError):
            sys.stderr.flush()
        sys.stdout = saved
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        doc = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (the live view redirects it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class MaskFilter(logging.Filter):
    """Masks secrets in every record our stderr handlers emit, third-party loggers included.
    The run's mask function is known only once its secrets are resolved: ``set_mask`` (the
    ``Runner``'s ``on_mask``) installs it; until then records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._mask: Callable[[str], str] | None = None

    def set_mask(self, mask: Callable[[str], str]) -> None:
        self._mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        mask = self._mask
        if mask is None:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format call: show it masked, don't raise in the caller
            text = f"{record.msg} (bad logging arguments: {record.args!r})"
        masked = mask(text)
        if masked != text or record.args:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


LOG_FORMATS = ("text", "json")


def setup_logging(verbose: int, quiet: bool, log_format: str = "text", log_file: str | None = None) -> MaskFilter:
    """One stderr handler for the ``aetherflow`` logger and one for the root logger (plugins
    and libraries: WARNING and up, ERROR with -q, everything with -vv), both behind the same
    ``MaskFilter``, whose mask the caller sets once a run's secrets are resolved. Returns that
    filter. Handlers other than ours on the root logger (a test harness's) are left alone.

    ``log_file``: aetherflow's log records from INFO up (whatever -q or -v say) and every line
    it writes on stderr (``stderr()``, ``log_line()``, errors) are appended there too, with the
    time, masked like stderr."""
    if log_format not in LOG_FORMATS:
        raise UsageError(f"--log-format {log_format!r}: use text or json", code="usage.log_format")
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    mask_filter = MaskFilter()

    def handler(fmt: str) -> logging.Handler:
        h = _StderrHandler()
        h.setFormatter(JsonLogFormatter() if log_format == "json" else logging.Formatter(fmt))
        h.addFilter(mask_filter)
        h.setLevel(level)
        return h

    detailed = "%(asctime)s %(levelname)s %(name)s %(message)s"
    logger = logging.getLogger("aetherflow")
    for old in logger.handlers:
        old.close()
    logger.handlers.clear()
    logger.addHandler(handler("%(levelname)s %(message)s" if verbose < 2 else detailed))
    logger.propagate = False
    logger.setLevel(level)
    file_logger = logging.getLogger(FILE_LOGGER)
    for old in file_logger.handlers:
        old.close()
    file_logger.handlers.clear()
    file_logger.propagate = False
    if log_file:
        try:
            fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--log-file {log_file}: {exc.strerror or exc}", code="usage.log_file") from exc
        fh.setFormatter(JsonLogFormatter() if log_format == "json" else
                        logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        fh.addFilter(mask_filter)
        fh.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
        logger.addHandler(fh)
        logger.setLevel(min(level, fh.level))
        file_logger.addHandler(fh)
        file_logger.setLevel(logging.DEBUG)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:  # ours from an earlier call
        root.removeHandler(old)
    root.addHandler(handler("%(levelname)s %(name)s: %(message)s" if verbose < 2 else detailed))
    # libraries log routine chatter at INFO (httpx: one line per request): shown from -vv only
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.WARNING)
    return mask_filter


@contextmanager
def signal_handlers(on_signal: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM / SIGINT set the run's cancel token (the engine stops at once, kills process
    groups, records INTERRUPTED). A second SIGINT falls back to the default behaviour."""
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        on_signal(name)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def begin(*, config: str | None = None, log_file: str | None = None, verbose: int = 0, quiet: bool = False,
          log_format: str | None = None, **options: Any) -> tuple[Any, MaskFilter]:
    """What every command does first: logging (with ``--log-file``), then the settings from the
    options, the environment and the config file (``settings_from_env``), then logging again
    in the log format they chose. Returns the settings and the mask filter of the log handlers."""
    from aetherflow.settings import settings_from_env

    first = log_format if log_format in LOG_FORMATS else "text"
    mask_filter = setup_logging(verbose, quiet, first, log_file)
    settings = settings_from_env(process_env(), config=config, log_format=log_format, **options)
    if settings.log_format != first:
        mask_filter = setup_logging(verbose, quiet, settings.log_format, log_file)
    return settings, mask_filter


def crash_hooks(env: dict[str, str]) -> Callable[[str, Any], None] | None:
    """Test-only crash points: ``AETHERFLOW_TEST_CRASH_AT=step.started:job.step[:attempt]`` or
    ``step.finished:job.step`` SIGKILLs this process at that point. Off unless the variable is set."""
    spec = env.get("AETHERFLOW_TEST_CRASH_AT")
    if not spec:
        return None
    point, _, target = spec.partition(":")

    def hook(name: str, info: Any) -> None:
        if name != point:
            return
        where = f"{info.get('job')}.{info.get('step')}"
        if target and not (target == where or target == f"{where}:{info.get('attempt')}"):
            return
        os.kill(os.getpid(), signal.SIGKILL)

    return hook
