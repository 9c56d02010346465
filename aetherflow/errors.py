"""Errors, locations and exit codes: the one error tree of aetherflow.

```
AetherflowError          code, message, location, hint, exit_code (ClassVar)
├── UsageError         2  bad flags or arguments
├── SpecError          2  .issues: tuple[Issue, ...]  (YAML, schema, semantic, template, `when`)
├── PluginError        2  a needed plugin failed to import; duplicate step name (names both sources)
├── ResolutionError    2  missing env var, secret, profile or resource, before anything ran
├── NotFoundError      2  unknown run id
├── ConflictError      3  RunActiveError, LockBusyError, KeyInUseError (names run, pid, host)
├── StateError         1  unreadable or corrupt store: says how to recover, never resets it
├── ConnectorError     1  driver errors translated at the boundary: raise ConnectorError(...) from exc
├── StepError          1  for step authors; the engine records it (or any exception) as FAILED
└── TemplateError      1  a template that cannot be rendered at run time (missing path)
```

Only ``render.py`` turns these into text; only ``cli/`` turns them into exit codes.
This module imports nothing but the standard library.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """Process exit codes: a written contract (docs/exit-codes.md)."""

    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    CONFLICT = 3
    SKIPPED = 4
    WAITING = 5
    INTERNAL = 70
    TIMED_OUT = 124  # the run's own time limit (flow.timeout_seconds, run --timeout); like timeout(1)
    SIGINT = 130
    SIGTERM = 143


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_path(path: Sequence[str | int]) -> str:
    """A JSON path as issues show it: ``("jobs", 1, "a b")`` -> ``jobs[1]["a b"]``; ``()`` -> ``""``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            import json

            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is in a file: 1-based line and column, and a JSON path."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""

    def __str__(self) -> str:
        parts = [self.file or "<flow>"]
        if self.line is not None:
            parts.append(str(self.line))
            parts.append(str(self.column or 1))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation finding. ``code`` is a stable dotted name (docs/error-codes.md)."""

    code: str
    message: str
    location: Location | None = None
    hint: str | None = None

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "code": self.code,
            "message": self.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "column": loc.column if loc else None,
            "path": loc.path if loc else "",
            "hint": self.hint,
        }


class AetherflowError(Exception):
    """Root of every error aetherflow raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.RUN_FAILED
    default_code: ClassVar[str] = "aetherflow.error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: Location | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(AetherflowError):
    exit_code = ExitCode.USAGE
    default_code = "usage.error"


class NotFoundError(AetherflowError):
    exit_code = ExitCode.USAGE
    default_code = "run.not_found"


class SpecError(AetherflowError):
    """An invalid flow: carries every issue found, not only the first."""

    exit_code = ExitCode.USAGE
    default_code = "flow.invalid"

    def __init__(self, issues: tuple[Issue, ...] | list[Issue], *, file: str | None = None) -> None:
        self.issues = tuple(issues)
        first = self.issues[0].message if self.issues else "invalid flow"
        n = len(self.issues)
        msg = first if n == 1 else f"{n} problems, first: {first}"
        super().__init__(
            msg,
            code=self.issues[0].code if self.issues else None,
            location=self.issues[0].location if self.issues else Location(file=file),
        )


class PluginError(AetherflowError):
    exit_code = ExitCode.USAGE
    default_code = "plugin.error"


class ResolutionError(AetherflowError):
    exit_code = ExitCode.USAGE
    default_code = "resolve.error"


class ConflictError(AetherflowError):
    exit_code = ExitCode.CONFLICT
    default_code = "conflict"


class RunActiveError(ConflictError):
    default_code = "run.active"


class LockBusyError(ConflictError):
    default_code = "lock.busy"


class KeyInUseError(ConflictError):
    default_code = "run.key_in_use"


class StateError(AetherflowError):
    exit_code = ExitCode.RUN_FAILED
    default_code = "state.error"


class ConnectorError(AetherflowError):
    default_code = "connector.error"


class StepError(AetherflowError):
    """Raised by step authors for an expected failure; the message is shown as is."""

    default_code = "step.failed"


class TemplateError(AetherflowError):
    default_code = "template.error"


class StepTimeoutError(StepError):
    default_code = "step.timeout"


class Interrupted(AetherflowError):
    """The run was asked to stop (SIGINT / SIGTERM). Carries the exit code to use."""

    default_code = "run.interrupted"

    def __init__(self, message: str, *, signal_exit: ExitCode = ExitCode.SIGTERM) -> None:
        super().__init__(message)
        self.signal_exit = signal_exit
