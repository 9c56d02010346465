"""aetherflow.records: the dataclass behaviour the package relies on, and that a command defines
its records without importing dataclasses."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from typing import ClassVar

import pytest

from aetherflow.records import field, fields, record, replace


@record(frozen=True, kw_only=True)
class Spec:
    id: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    fn: object = field(default=len)
    LIMIT: ClassVar[int] = 3

    def label(self) -> str:
        return f"{self.id}#{self.count}"


@record
class Mutable:
    x: int
    items: list[int] = field(default_factory=list)


@record(frozen=True)
class Point:
    x: int
    y: int = 0

    def __str__(self) -> str:
        return f"{self.x},{self.y}"


@record(frozen=True)
class Point3(Point):
    z: int = 0


# module level, as pickle needs
@record(frozen=True)
class Pair:
    a: int
    b: str


def test_init_defaults_and_factories() -> None:
    s = Spec(id="a")
    assert (s.id, s.count, s.tags, s.extra, s.fn) == ("a", 0, (), {}, len)
    assert Spec(id="a").extra is not Spec(id="a").extra  # a new dict per instance
    assert Spec(id="b", count=2).label() == "b#2"
    assert Spec.LIMIT == 3 and fields(Spec) == ("id", "count", "tags", "extra", "fn")
    with pytest.raises(TypeError):
        Spec("a")  # type: ignore[misc]  # keyword-only
    with pytest.raises(TypeError):
        Spec()  # type: ignore[call-arg]
    assert Point(1) == Point(x=1, y=0)


def test_repr_eq_hash() -> None:
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert str(Point(1, 2)) == "1,2"  # the class's own method is kept
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    with pytest.raises(TypeError):
        hash(Mutable(1))


def test_frozen_and_slots() -> None:
    p = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    m = Mutable(1)
    m.x = 7
    m.items.append(1)
    assert m == Mutable(7, [1])
    with pytest.raises(AttributeError):
        m.other = 1  # type: ignore[attr-defined]


def test_inheritance_puts_base_fields_first() -> None:
    p = Point3(1, 2, 3)
    assert fields(p) == ("x", "y", "z") and repr(p) == "Point3(x=1, y=2, z=3)"
    assert Point3(1) == Point3(1, 0, 0) and Point3(1) != Point(1)


def test_replace_copy_pickle_match() -> None:
    s = Spec(id="a", count=1)
    assert replace(s, count=5) == Spec(id="a", count=5) and s.count == 1
    with pytest.raises(TypeError, match="no field"):
        replace(s, nope=1)
    pair = Pair(1, "x")
    assert copy.copy(pair) == pair and copy.deepcopy(pair) == pair
    assert pickle.loads(pickle.dumps(pair)) == pair
    m = Mutable(1, [2])
    assert copy.deepcopy(m) == m and copy.deepcopy(m).items is not m.items
    match Point(4, 5):
        case Point(a, b):
            assert (a, b) == (4, 5)


def test_the_first_call_checks_arguments_like_every_later_one() -> None:
    """``__init__`` is generated at the first instance: that first call already refuses what
    every later one refuses, and afterwards the class carries the generated signature."""
    import inspect

    @record(frozen=True, kw_only=True)
    class Fresh:
        a: int
        b: str = "x"

    class Plain(Fresh):  # not a record: inherits the record's __init__
        pass

    with pytest.raises(TypeError, match="required keyword-only argument: 'a'"):
        Fresh()
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        Fresh(a=1, c=2)
    assert Fresh(a=1) == Fresh(a=1, b="x") and Plain(a=2).a == 2
    assert str(inspect.signature(Fresh)) == "(*, a, b='x')"
    assert Fresh.__init__.__qualname__.endswith("Fresh.__init__")

    @record
    class Other:
        x: int

    assert Plain.__init__ is Fresh.__init__ and Other(3).x == 3  # each record compiles its own


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default"):
        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_a_run_defines_no_dataclass_of_ours(home, write_flow) -> None:
    """A noop run defines its records with aetherflow.records: no class of ours is a dataclass.
    (filelock imports dataclasses for its own use; the process step, imported only when a flow
    uses it, keeps one stdlib dataclass, as built-in steps use only api, process and workspace.)"""
    flow = write_flow("version: 1\nflow:\n  id: one\njobs:\n  - id: j\n    steps:\n      - {id: s, type: noop}\n")
    code = ("import sys\nfrom aetherflow.cli import main\ntry:\n    main(['run', sys.argv[1], '-q'])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "mods = [m for n, m in list(sys.modules.items()) if n.startswith('aetherflow') and m is not None]\n"
            "ours = [f'{m.__name__}.{k}' for m in mods for k, v in vars(m).items()\n"
            "        if isinstance(v, type) and v.__module__ == m.__name__ and '__dataclass_fields__' in vars(v)]\n"
            "records = [v for m in mods for v in vars(m).values() if isinstance(v, type) and '__record_fields__' in vars(v)]\n"
            "sys.stdout.write(f'{ours} {len(records) > 20}')")
    out = subprocess.run([sys.executable, "-c", code, str(flow)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[] True"
