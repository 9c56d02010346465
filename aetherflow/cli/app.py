"""The typer application: command groups, error → exit code mapping, logging and signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from aetherflow import __version__
from aetherflow.errors import AetherflowError, ExitCode

app = typer.Typer(
    name="aetherflow",
    help="YAML-defined flow runner for operations and ETL batch work: validate, run, resume.\n\n"
    "Example: aetherflow run flows/daily.yaml",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"aetherflow {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """YAML-defined flow runner: validate, run and resume flows of jobs and steps.

    Example: aetherflow run flows/daily.yaml
    """


def process_env() -> dict[str, str]:
    return dict(os.environ)


def stderr(text: str) -> None:
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


def stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def fail(exc: AetherflowError, *, as_json: bool = False) -> NoReturn:
    from aetherflow import render

    if as_json:
        stdout(render.dumps(render.error_json(exc)))
    stderr(render.error_text(exc))
    raise typer.Exit(int(exc.exit_code))


@contextmanager
def guarded(as_json: bool = False) -> Iterator[None]:
    """Map aetherflow errors to their exit code (one message, no traceback); anything else is
    an internal error: traceback without locals, exit 70."""
    try:
        yield
    except typer.Exit:
        raise
    except AetherflowError as exc:
        fail(exc, as_json=as_json)
    except KeyboardInterrupt:
        stderr("aetherflow: interrupted")
        raise typer.Exit(int(ExitCode.SIGINT)) from None
    except Exception:  # noqa: BLE001 - the last line of defence
        stderr("aetherflow: internal error (a bug in aetherflow, please report it with this traceback):")
        stderr(traceback.format_exc())
        raise typer.Exit(int(ExitCode.INTERNAL)) from None


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        return json.dumps({"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
                           "message": record.getMessage()}, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (the live view redirects it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(verbose: int, quiet: bool, log_format: str = "text") -> None:
    logger = logging.getLogger("aetherflow")
    logger.handlers.clear()
    handler = _StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose < 2 else "%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        raise AetherflowError(f"--log-format {log_format!r}: use text or json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING)


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


def run_app(args: list[str]) -> None:
    app(args=args, prog_name="aetherflow")


# command modules register themselves on `app` (imported last: they import from here)
from aetherflow.cli import inspect as _inspect  # noqa: E402,F401
from aetherflow.cli import runcmd as _runcmd  # noqa: E402,F401
from aetherflow.cli import runs as _runs  # noqa: E402,F401
