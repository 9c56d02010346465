"""Immutable data model: what the YAML says (``*Spec``), statuses, and ``StepResult``.

Specs are frozen dataclasses whose mappings are ``MappingProxyType`` and sequences tuples
(``freeze``); ``thaw`` turns them back into plain JSON-able values. Every spec carries the
``Location`` it came from so run-time failures can point into the YAML.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aetherflow.errors import Location, UsageError


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    WAITING = "WAITING"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    TIMED_OUT = "TIMED_OUT"  # the run's own time limit expired (flow.timeout_seconds, run --timeout)
    CRASHED = "CRASHED"  # derived: RUNNING with no live executor; never stored


#: run statuses that resume continues (CRASHED is shown for a RUNNING run whose process is gone)
RESUMABLE_STATUSES = frozenset({RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.TIMED_OUT, RunStatus.WAITING})
#: run statuses of a run that is over (prune may remove it)
FINISHED_STATUSES = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED, RunStatus.TIMED_OUT}
)


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    BLOCKED = "BLOCKED"
    WAITING = "WAITING"
    CANCELLED = "CANCELLED"


class StepStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    WAITING = "WAITING"
    CANCELLED = "CANCELLED"


STEP_SUCCESS = "SUCCESS"
STEP_SKIPPED = "SKIPPED"
STEP_WAITING = "WAITING"
_RESULT_STATUSES = (STEP_SUCCESS, STEP_SKIPPED, STEP_WAITING)

#: key inside stored event data listing the keys whose values carried a secret (masked)
MASKED_KEYS_FIELD = "__aetherflow_masked__"

#: statuses that resume never executes again
DONE_STEP_STATUSES = frozenset({StepStatus.SUCCESS, StepStatus.SKIPPED})


#: exact types returned as they are, before the (slower, ABC) ``Mapping`` check
_LEAVES = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts become read-only mappings, lists tuples."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple([freeze(v) for v in value])
    return value


def thaw(value: Any) -> Any:
    """Inverse of ``freeze``: plain dicts and lists, ready for ``json.dumps``."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


EMPTY: Mapping[str, Any] = MappingProxyType({})


class ReadOnlyDict(dict[str, Any]):
    """A ``dict`` that refuses changes: the inputs a step is handed (docs/step-authors.md).

    It is still a ``dict`` for ``isinstance`` checks, ``json.dumps`` and drivers that want one
    (aetherflow-core steps read their inputs that way); ``dict(x)``, ``x.copy()`` and
    ``copy.deepcopy(x)`` give a plain, changeable copy."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("step inputs are read-only; change a copy: dict(inputs) or copy.deepcopy(inputs)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> Any:
        return (dict, (thaw(self),))


class ReadOnlyList(list[Any]):
    """A ``list`` that refuses changes (see :class:`ReadOnlyDict`)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("step inputs are read-only; change a copy: list(value) or copy.deepcopy(inputs)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return thaw(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> Any:
        return (list, (thaw(self),))


def read_only(value: Any) -> Any:
    """JSON-like data as a step receives it: mappings become :class:`ReadOnlyDict`, lists and
    tuples :class:`ReadOnlyList`, deeply; other values are returned as they are."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if isinstance(value, Mapping):
        return ReadOnlyDict({k: read_only(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return ReadOnlyList([read_only(v) for v in value])
    return value




def empty_map() -> Mapping[str, Any]:
    """Default factory for read-only mapping fields."""
    return EMPTY


class StepResult:
    """What a step returns. Immutable once built.

    ``StepResult(status, outputs, reason=None, *, outcome=None, metadata=None)``: the positional
    arguments are aetherflow-core's (``StepResult("SKIPPED", {...}, "no rows")`` gives a reason),
    and ``output=`` is accepted for ``outputs=``. A WAITING result says what it waits for with
    ``events=[...]`` and/or ``due_at`` (epoch seconds or an aware datetime).
    """

    __slots__ = ("status", "outputs", "outcome", "reason", "metadata", "events", "due_at")

    status: str
    outputs: Mapping[str, Any]
    outcome: str | None
    reason: str | None
    metadata: Mapping[str, Any]
    events: tuple[str, ...]
    due_at: float | None

    def __init__(
        self,
        status: str = STEP_SUCCESS,
        outputs: Mapping[str, Any] | None = None,
        reason: str | None = None,
        *,
        outcome: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        output: Mapping[str, Any] | None = None,
        events: Sequence[str] = (),
        due_at: Any = None,
    ) -> None:
        status = str(status).upper()
        if status not in _RESULT_STATUSES:
            raise ValueError(f"StepResult status must be one of {_RESULT_STATUSES}, got {status!r}")
        if outputs is not None and output is not None:
            raise TypeError("StepResult takes outputs= or output=, not both")
        outs = outputs if outputs is not None else (output if output is not None else {})
        if not isinstance(outs, Mapping):
            raise TypeError(f"StepResult outputs must be a mapping, got {type(outs).__name__}")
        if hasattr(due_at, "timestamp"):
            due_at = float(due_at.timestamp())
        set_ = object.__setattr__
        set_(self, "status", status)
        set_(self, "outputs", freeze(dict(outs)))
        set_(self, "outcome", outcome)
        set_(self, "reason", reason)
        set_(self, "metadata", freeze(dict(metadata or {})))
        set_(self, "events", tuple(str(e) for e in events))
        set_(self, "due_at", None if due_at is None else float(due_at))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("StepResult is immutable")

    @property
    def output(self) -> Mapping[str, Any]:
        """aetherflow-core spelling of ``outputs``."""
        return self.outputs

    def __repr__(self) -> str:
        return (
            f"StepResult(status={self.status!r}, outputs={dict(self.outputs)!r}, "
            f"outcome={self.outcome!r}, reason={self.reason!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepResult):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# Specs: what the YAML says, after schema and semantic validation.


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySpec:
    max_attempts: int = 1
    backoff: str = "exponential"  # exponential | linear | constant
    initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0
    jitter: bool = True

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> RetrySpec:
        """The policy the given fields (a flow's ``retry:``, a step type's default, or one over
        the other) set, the rest at their defaults. Fields were checked against the schema."""
        d = cls()
        return cls(
            max_attempts=int(fields.get("max_attempts", d.max_attempts)),
            backoff=str(fields.get("backoff", d.backoff)),
            initial_delay_seconds=float(fields.get("initial_delay_seconds", d.initial_delay_seconds)),
            max_delay_seconds=float(fields.get("max_delay_seconds", d.max_delay_seconds)),
            jitter=bool(fields.get("jitter", d.jitter)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    id: str
    type: str
    inputs: Mapping[str, Any] = field(default_factory=empty_map)
    outputs: Mapping[str, Any] = field(default_factory=empty_map)
    when: Any = None  # parsed expression (expressions.Expr) or None
    when_text: str | None = None
    on_no_data: str | None = None
    on_outcome: Mapping[str, str] = field(default_factory=empty_map)
    retry: RetrySpec = field(default_factory=RetrySpec)
    #: the fields the flow's ``retry:`` sets: they override the step type's default policy
    retry_fields: Mapping[str, Any] = field(default_factory=empty_map)
    timeout_seconds: float | None = None
    description: str | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    id: str
    steps: tuple[StepSpec, ...]
    depends_on: tuple[str, ...] = ()
    depends_on_policy: str = "all_success"  # all_success | all_done
    when: Any = None
    when_text: str | None = None
    description: str | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamSpec:
    name: str
    type: str = "string"  # string | integer | number | boolean | list | object
    default: Any = None
    has_default: bool = False
    required: bool = False
    description: str | None = None
    choices: tuple[Any, ...] | None = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceSpec:
    root: str | None = None
    cleanup_policy: str = "never"  # on_success | always | never
    layout: Mapping[str, Any] = field(default_factory=empty_map)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateSpec:
    backend: str = "sqlite"
    path: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LocksSpec:
    scope: str = "none"  # none | flow | job
    wait_seconds: float = 0.0
    ttl_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UniqueSpec:
    key: str
    scope: str = "flow"  # flow | global


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSpec:
    name: str
    kind: str
    driver: str
    profile: str | None = None
    config: Mapping[str, Any] = field(default_factory=empty_map)
    options: Mapping[str, Any] = field(default_factory=empty_map)
    decode: Mapping[str, Any] = field(default_factory=empty_map)
    location: Location = field(default_factory=Location)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSpec:
    name: str
    source: Mapping[str, Any]  # {env: X} | {file: P} | {dotenv: P, key: K} | {command: [...]}
    location: Location = field(default_factory=Location)


#: what a notifier may be told about (``on = [...]``), SPEC section 13
NOTIFY_EVENTS = ("failed", "crashed", "interrupted", "timed_out", "lock_busy", "invalid", "waiting", "succeeded")


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifySpec:
    """One notifier (``[[notify]]`` in the config file, an item of ``flow.notify``): the events
    it gets and exactly one target: ``command`` (argv; the event as JSON on stdin), ``webhook``
    (URL; a POST of the same JSON) or ``email`` (``to`` and the smtp connector's settings, or a
    flow's ``resource``). ``origin`` says where it was written, for messages."""

    on: tuple[str, ...]
    command: tuple[str, ...] | None = None
    webhook: str | None = None
    email: Mapping[str, Any] | None = None
    timeout_seconds: float = 10.0
    retries: int = 2
    #: config file only: shell patterns of the flow ids it is for (empty: every flow)
    flows: tuple[str, ...] = ()
    origin: str = ""

    def wants(self, event: str, flow_id: str | None) -> bool:
        """Whether this notifier gets ``event`` for a run of ``flow_id``."""
        if event not in self.on:
            return False
        if not self.flows or flow_id is None:
            return not self.flows or flow_id is None
        from fnmatch import fnmatchcase

        return any(fnmatchcase(flow_id, p) for p in self.flows)

    @property
    def kind(self) -> str:
        return "command" if self.command is not None else "webhook" if self.webhook is not None else "email"

    @classmethod
    def from_data(cls, raw: Mapping[str, Any], origin: str) -> NotifySpec:
        """A notifier from schema-valid data (a flow's ``notify`` item, a config ``[[notify]]``)."""
        command = raw.get("command")
        email = raw.get("email")
        return cls(
            on=tuple(str(e) for e in raw["on"]),
            command=tuple(str(a) for a in command) if command is not None else None,
            webhook=str(raw["webhook"]) if raw.get("webhook") is not None else None,
            email=freeze(dict(email)) if email is not None else None,
            timeout_seconds=float(raw.get("timeout_seconds", 10.0)),
            retries=int(raw.get("retries", 2)),
            flows=tuple(str(p) for p in raw.get("flows") or ()),
            origin=origin,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSpec:
    id: str
    jobs: tuple[JobSpec, ...]
    file: str = "<flow>"  # path as given (for messages)
    base_dir: str = "."  # directory of the flow file (absolute)
    sha256: str = ""
    text: str = ""
    description: str | None = None
    version: int | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=empty_map)
    params: Mapping[str, ParamSpec] = field(default_factory=empty_map)
    env_files: tuple[str, ...] = ()
    profiles_file: str | None = None
    workspace: WorkspaceSpec = field(default_factory=WorkspaceSpec)
    state: StateSpec = field(default_factory=StateSpec)
    locks: LocksSpec = field(default_factory=LocksSpec)
    unique: UniqueSpec | None = None
    max_parallel_jobs: int = 1
    timeout_seconds: float | None = None
    notify: tuple[NotifySpec, ...] = ()
    secrets: Mapping[str, SecretSpec] = field(default_factory=empty_map)
    resources: Mapping[str, ResourceSpec] = field(default_factory=empty_map)
    location: Location = field(default_factory=Location)

    def job(self, job_id: str) -> JobSpec:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise KeyError(job_id)


class Masked:
    """Stands in for a value that carried a secret and was masked in the run store.

    ``name`` says what was masked (e.g. ``steps.login.outputs.token``). Templates refuse to
    render it; ``when:`` expressions see it as null.
    """

    __slots__ = ("name",)

    name: str

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "'***'"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Masked):
            return NotImplemented
        return self.name == other.name

    def __hash__(self) -> int:
        return hash((Masked, self.name))


# ---------------------------------------------------------------------------------------------
# Business keys: ``NAME::VALUE``. NAME is the flow's ``unique.key`` (an identifier); ``::`` is
# the separator and cannot appear in a value, so ``X::Y`` given to a command is always NAME::VALUE
# and a bare ``Y`` is a VALUE under any name (docs/waiting.md).

KEY_SEPARATOR = "::"
KEY_VALUE_MAX = 200
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def check_key_value(value: str, what: str = "--key") -> str:
    """``value`` if it can be a business key value, else ``UsageError`` (exit 2) saying why:
    non-empty, at most ``KEY_VALUE_MAX`` characters, no control characters, no surrounding
    spaces, no ``::``."""
    problem = None
    if not value:
        problem = "is empty"
    elif len(value) > KEY_VALUE_MAX:
        problem = f"is {len(value)} characters long (at most {KEY_VALUE_MAX})"
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        problem = "contains a control character"
    elif value != value.strip():
        problem = "starts or ends with a space"
    elif KEY_SEPARATOR in value:
        problem = f"contains '{KEY_SEPARATOR}', which separates NAME::VALUE"
    if problem is not None:
        raise UsageError(f"{what} {value!r}: a business key value {problem}", code="usage.key")
    return value


def split_key(text: str, what: str = "--key") -> tuple[str | None, str]:
    """``NAME::VALUE`` -> (NAME, VALUE); ``VALUE`` -> (None, VALUE); both parts checked."""
    name, sep, value = text.partition(KEY_SEPARATOR)
    if not sep:
        return None, check_key_value(text, what)
    if not _KEY_NAME.fullmatch(name):
        raise UsageError(f"{what} {text!r}: {name!r} before '{KEY_SEPARATOR}' is not a key name "
                         f"(a key value cannot contain '{KEY_SEPARATOR}')", code="usage.key")
    return name, check_key_value(value, what)
