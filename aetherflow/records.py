"""Value records: the part of ``dataclasses`` aetherflow uses, at a quarter of its start-up cost.

Every command defines some fifty record classes before it does anything (specs, store records,
events, registry entries). ``@dataclass(frozen=True, slots=True)`` builds each one with six
separate ``exec`` calls plus a second class for the slots, about 1.5 ms a class on the machines
of docs/performance.md, 60 ms a run; importing ``dataclasses`` also imports ``inspect``.
:func:`record` generates only ``__init__`` (one small ``exec``, at the first instance: instances
are built as fast as dataclass ones) and gives every record the same ``__repr__``, ``__eq__``,
``__hash__`` and frozen ``__setattr__``, which read the field names from the class; it makes the
slotted class once.

Contract
--------
``@record``, ``@record(frozen=True)``, ``@record(kw_only=True)``, both: a class whose annotated
attributes are its fields, in order (a base class's record fields first). Like ``dataclass``
with ``slots=True`` and ``eq=True``:

* ``__init__`` takes the fields (keyword-only with ``kw_only``), a class attribute (or
  ``field(default=v)``) is the field's default, ``field(default_factory=f)`` calls ``f`` for
  each instance;
* ``__repr__`` ``Name(a=1, b='x')``; ``__eq__`` compares the fields of two instances of the
  same class (``NotImplemented`` otherwise); frozen records hash their fields, others are
  unhashable;
* frozen: assigning or deleting an attribute raises ``dataclasses.FrozenInstanceError``;
* ``__slots__`` are the fields, ``__match_args__`` the positional ones; ``copy``, ``deepcopy``
  and ``pickle`` work (``__getstate__``/``__setstate__``);
* a method the class body defines itself (``__repr__``, ``__eq__``, ...) is kept.

:func:`replace` is ``dataclasses.replace``; :func:`fields` gives the field names. Annotations
are never evaluated (``ClassVar`` is recognised by name). Type checkers see records as
dataclasses (``typing.dataclass_transform``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["field", "fields", "record", "replace"]

T = TypeVar("T")

_NOTSET: Any = type("_NotSet", (), {"__repr__": lambda self: "<not set>"})()


class _Field:
    __slots__ = ("default_factory",)

    def __init__(self, default_factory: Callable[[], Any]) -> None:
        self.default_factory = default_factory


def field(*, default: Any = _NOTSET, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field whose default is ``default_factory()``, called for each instance, or ``default``
    (for a default a class body cannot hold as is, such as a function)."""
    if default_factory is None:
        if default is _NOTSET:
            raise TypeError("field() needs default or default_factory")
        return default
    return _Field(default_factory)


def _frozen_error(name: str) -> AttributeError:
    from dataclasses import FrozenInstanceError  # only on this error path

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple([getattr(obj, n) for n in obj.__record_fields__])


def _repr(self: Any) -> str:
    fields_ = ", ".join([f"{n}={getattr(self, n)!r}" for n in self.__record_fields__])
    return f"{type(self).__qualname__}({fields_})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise _frozen_error(name)


def _frozen_delattr(self: Any, name: str) -> None:
    raise _frozen_error(name)


def _getstate(self: Any) -> tuple[Any, ...]:
    return _values(self)


def _setstate(self: Any, state: tuple[Any, ...]) -> None:
    for name, value in zip(self.__record_fields__, state, strict=True):
        object.__setattr__(self, name, value)


def _build(cls: type, frozen: bool, kw_only: bool) -> type:
    inherited: list[str] = []
    for base in reversed(cls.__mro__[1:]):
        for name in getattr(base, "__record_fields__", ()):
            if name not in inherited:
                inherited.append(name)
    annotations = cls.__dict__.get("__annotations__", {})
    own = [n for n, a in annotations.items() if not _is_classvar(a) and n not in inherited]
    names = (*inherited, *own)
    if not all(n.isidentifier() for n in names):  # the generated source names only fields
        raise TypeError(f"{cls.__qualname__}: field names must be identifiers")
    body = cls.__dict__
    glb: dict[str, Any] = {"_set": object.__setattr__, "_NOTSET": _NOTSET}
    params: list[str] = []
    lines: list[str] = []
    for name in names:
        default = body.get(name, _NOTSET) if name in own else _inherited_default(cls, name)
        if isinstance(default, _Field):
            glb[f"_f_{name}"] = default.default_factory
            params.append(f"{name}=_NOTSET")
            lines.append(f"  _set(self, {name!r}, _f_{name}() if {name} is _NOTSET else {name})")
            continue
        if default is _NOTSET:
            if params and "=" in params[-1] and not kw_only:
                raise TypeError(f"{cls.__qualname__}: field {name!r} without a default follows one with a default")
            params.append(name)
        else:
            glb[f"_d_{name}"] = default
            params.append(f"{name}=_d_{name}")
        lines.append(f"  _set(self, {name!r}, {name})")
    if kw_only and params:
        params.insert(0, "*")
    src = "\n".join([f"def __init__(self, {', '.join(params)}):", *(lines or ["  pass"])])
    made: dict[str, Any] = {"__init__": _deferred_init(src, glb, f"{cls.__qualname__}.__init__")}
    # the other methods are shared by every record: they read the field names from the class
    made.update(__repr__=_repr, __eq__=_eq, __getstate__=_getstate, __setstate__=_setstate)
    if frozen:
        made.update(__hash__=_hash, __setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
    ns = {k: v for k, v in body.items() if k not in own and k not in ("__dict__", "__weakref__")}
    for name, fn in made.items():
        if name == "__hash__":
            explicit = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
            if not explicit:
                ns[name] = fn
        elif name not in body or name in ("__setattr__", "__delattr__", "__getstate__", "__setstate__"):
            ns[name] = fn
    if not frozen and "__hash__" not in body:
        ns["__hash__"] = None
    ns["__slots__"] = tuple(own)
    ns["__record_fields__"] = names
    ns["__record_defaults__"] = {n: body[n] for n in own if n in body}  # for subclasses (_inherited_default)
    ns["__match_args__"] = () if kw_only else names
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    new.__qualname__ = cls.__qualname__
    return new


def _deferred_init(src: str, glb: dict[str, Any], qualname: str) -> Callable[..., None]:
    """The record's ``__init__`` until its first call, which compiles the generated one, puts it
    on the record class that holds this stub and calls it. Compiling is most of what defining a
    record costs, and a command builds instances of about half the records it defines."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        made: dict[str, Any] = {}
        exec(src, glb, made)  # noqa: S102 - our own generated source, as dataclasses does
        init = made["__init__"]
        init.__qualname__ = qualname
        owner = next((k for k in type(self).__mro__ if k.__dict__.get("__init__") is __init__), None)
        if owner is not None:
            type.__setattr__(owner, "__init__", init)
        init(self, *args, **kwargs)

    __init__.__qualname__ = qualname
    return __init__


def _inherited_default(cls: type, name: str) -> Any:
    for base in cls.__mro__[1:]:
        defaults = base.__dict__.get("__record_defaults__")
        if defaults is not None and name in defaults:
            return defaults[name]
    return _NOTSET


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, frozen: bool = False, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False, kw_only: bool = False) -> Any:
    """Make ``cls`` a record (see the module docstring)."""

    def wrap(c: type[T]) -> type[T]:
        return _build(c, frozen, kw_only)

    return wrap if cls is None else wrap(cls)


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of record ``obj`` with ``changes`` applied (``dataclasses.replace``)."""
    values = {n: getattr(obj, n) for n in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)  # type: ignore[call-arg]


def fields(obj: Any) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return tuple(obj.__record_fields__)
