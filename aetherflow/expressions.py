r"""The ``when:`` condition language: a hand-written tokenizer and recursive-descent parser.

Nothing is ever passed to ``eval``. Grammar, loosest binding first::

    expr        := or_expr
    or_expr     := and_expr ( "or" and_expr )*
    and_expr    := not_expr ( "and" not_expr )*
    not_expr    := "not" not_expr | comparison
    comparison  := primary ( COMPARE primary )?        (non-associative: a < b < c is an error)
    COMPARE     := "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in"
    primary     := NUMBER | "-" NUMBER | STRING | CONSTANT | list | "(" expr ")" | PATH
    list        := "[" ( expr ( "," expr )* ","? )? "]"
    NUMBER      := digits ( "." digits )? ( [eE] [+-]? digits )?
    STRING      := '...' | "..."   with backslash escapes \\ \' \" \n \t
    CONSTANT    := true | false | null | True | False | None
    PATH        := IDENT ( "." SEGMENT )*   IDENT = [A-Za-z_][A-Za-z0-9_-]*,
                                            SEGMENT = [A-Za-z0-9_-]+ (digits index a list)

Semantics:

* A path to something missing (or to a value masked in the run store) is ``null``.
* ``==`` / ``!=`` never coerce: ``'3' == 3`` is false, ``1 == 1.0`` is true, and a boolean equals
  only a boolean (``true == 1`` is false). Lists compare item by item, mappings key by key.
* ``< <= > >=`` compare numbers with numbers, strings with strings and other values of one
  same type; anything else (including null) is false, never an error.
* ``in`` tests membership in a list, the keys of a mapping, or a substring (both strings).
  ``not in`` is its negation, except that when the right side is null or not a container both
  ``in`` and ``not in`` are false.
* ``and`` / ``or`` short-circuit and give booleans; a bare value counts by Python truthiness.
  :func:`evaluate` always returns a ``bool``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, TypeAlias

from aetherflow.errors import AetherflowError, ExitCode, Location
from aetherflow.model import Masked
from aetherflow.template import MISSING, lookup

__all__ = [
    "And",
    "Compare",
    "Const",
    "Expr",
    "ExpressionError",
    "ListOf",
    "Not",
    "Or",
    "Path",
    "evaluate",
    "parse",
    "parse_when",
    "paths",
]

_MAX_DEPTH: Final = 64


class ExpressionError(AetherflowError):
    """A ``when:`` expression that does not parse; ``offset`` is 0-based in the text."""

    exit_code = ExitCode.USAGE
    default_code = "when.syntax"

    def __init__(
        self,
        message: str,
        *,
        offset: int = 0,
        hint: str | None = None,
        location: Location | None = None,
    ) -> None:
        super().__init__(message, hint=hint, location=location)
        self.offset = offset


# ---------------------------------------------------------------------------------------------
# Tree


@dataclass(frozen=True, slots=True)
class Const:
    """A literal: number, string, boolean or null."""

    value: Any


@dataclass(frozen=True, slots=True)
class Path:
    """A dotted path looked up in the scope."""

    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list display ``[a, b, 'c']``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    """``left OP right`` with OP one of ``== != < <= > >= in`` or ``not in``."""

    op: str
    left: Expr
    right: Expr


Expr: TypeAlias = Const | Path | ListOf | Not | And | Or | Compare


# ---------------------------------------------------------------------------------------------
# Tokenizer

_NUM: Final = "num"
_STR: Final = "str"
_NAME: Final = "name"  # a path or a keyword
_OP: Final = "op"
_END: Final = "end"

_PATH_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_NUM_RE: Final = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_WORD_TAIL_RE: Final = re.compile(r"[A-Za-z0-9_]+")
_OPERATORS: Final = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", "-")
_BAD_OPERATORS: Final = {
    "&&": "use 'and'",
    "||": "use 'or'",
    "=": "use '==' to compare",
    "!": "use 'not'",
    "&": "use 'and'",
    "|": "use 'or'",
}
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_CONSTANTS: Final[Mapping[str, Any]] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "null": None,
    "None": None,
}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})
_COMPARE_OPS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    value: Any
    offset: int
    text: str


def _error(
    message: str, offset: int, hint: str | None = None, found: str | None = None
) -> ExpressionError:
    tail = f" (found {found})" if found else ""
    return ExpressionError(f"{message} at column {offset + 1}{tail}", offset=offset, hint=hint)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _PATH_RE.match(text, i)
            assert m is not None
            toks.append(_Tok(_NAME, m.group(), i, m.group()))
            i = m.end()
            continue
        if ch.isascii() and ch.isdigit():
            m = _NUM_RE.match(text, i)
            assert m is not None
            tail = _WORD_TAIL_RE.match(text, m.end())
            if tail is not None:
                bad = text[i : tail.end()]
                raise _error(f"invalid number {bad!r}", i)
            raw = m.group()
            number: int | float = float(raw) if (m.group(1) or m.group(2)) else int(raw)
            toks.append(_Tok(_NUM, number, i, raw))
            i = m.end()
            continue
        if ch in "'\"":
            value, end = _read_string(text, i)
            toks.append(_Tok(_STR, value, i, text[i:end]))
            i = end
            continue
        if text.startswith("{{", i):
            raise _error(
                "templates are not allowed in 'when'",
                i,
                hint="write the path without braces, e.g. when: steps.probe.outputs.count > 0",
            )
        for bad, advice in _BAD_OPERATORS.items():
            if text.startswith(bad, i) and not text.startswith(("==", "!="), i):
                raise _error(f"unknown operator {bad!r}", i, hint=advice)
        for op in _OPERATORS:
            if text.startswith(op, i):
                toks.append(_Tok(_OP, op, i, op))
                i += len(op)
                break
        else:
            raise _error(f"unexpected character {ch!r}", i)
    toks.append(_Tok(_END, None, n, "end of expression"))
    return toks


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            esc = text[i + 1]
            if esc not in _ESCAPES:
                raise _error(
                    f"unknown escape '\\{esc}' in string",
                    i,
                    hint="known escapes: \\\\ \\' \\\" \\n \\t",
                )
            out.append(_ESCAPES[esc])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise _error(f"unterminated string starting with {quote}", start)


# ---------------------------------------------------------------------------------------------
# Parser


class _Parser:
    __slots__ = ("toks", "pos", "depth")

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.pos]

    def _is(self, kind: str, value: Any) -> bool:
        t = self.toks[self.pos]
        return t.kind == kind and t.value == value

    def _peek_is(self, kind: str, value: Any) -> bool:
        t = self.toks[self.pos + 1] if self.pos + 1 < len(self.toks) else self.toks[-1]
        return t.kind == kind and t.value == value

    def _advance(self) -> _Tok:
        t = self.toks[self.pos]
        if t.kind != _END:
            self.pos += 1
        return t

    def _unexpected(self, expected: str | None = None) -> ExpressionError:
        t = self.tok
        found = "end of expression" if t.kind == _END else repr(t.text)
        if expected:
            return _error(f"expected {expected}", t.offset, found=found)
        if t.kind == _END:
            return _error("unexpected end of expression", t.offset)
        return _error(f"unexpected token {t.text!r}", t.offset)

    def parse(self) -> Expr:
        if self.tok.kind == _END:
            raise _error("empty expression", 0, hint="write a condition, e.g. params.full == true")
        expr = self.or_expr()
        if self.tok.kind != _END:
            raise self._unexpected()
        return expr

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self._is(_NAME, "or"):
            self._advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self._is(_NAME, "and"):
            self._advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Expr:
        if self._is(_NAME, "not"):
            start = self._advance()
            self._enter(start)
            try:
                return Not(self.not_expr())
            finally:
                self.depth -= 1
        return self.comparison()

    def _compare_op(self) -> str | None:
        t = self.tok
        if t.kind == _OP and t.value in _COMPARE_OPS:
            return str(t.value)
        if t.kind == _NAME and t.value == "in":
            return "in"
        if t.kind == _NAME and t.value == "not" and self._peek_is(_NAME, "in"):
            return "not in"
        return None

    def comparison(self) -> Expr:
        left = self.primary()
        op = self._compare_op()
        if op is None:
            return left
        self._advance()
        if op == "not in":
            self._advance()
        right = self.primary()
        if self._compare_op() is not None:
            raise _error(
                f"comparisons cannot be chained: unexpected {self.tok.text!r}",
                self.tok.offset,
                hint="join comparisons with 'and', e.g. a < b and b < c",
            )
        return Compare(op, left, right)

    def _enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _error("expression nested too deeply", tok.offset)

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == _NUM or t.kind == _STR:
            self._advance()
            return Const(t.value)
        if t.kind == _OP:
            if t.value == "-":
                self._advance()
                nxt = self.tok
                if nxt.kind != _NUM:
                    raise _error("unary '-' applies only to numbers", t.offset)
                self._advance()
                return Const(-nxt.value)
            if t.value == "(":
                self._advance()
                self._enter(t)
                try:
                    inner = self.or_expr()
                finally:
                    self.depth -= 1
                if not self._is(_OP, ")"):
                    raise self._unexpected("')'")
                self._advance()
                return inner
            if t.value == "[":
                return self.list_display()
            raise self._unexpected()
        if t.kind == _NAME:
            name = str(t.value)
            if name in _KEYWORDS:
                raise self._unexpected()
            self._advance()
            if name in _CONSTANTS:
                return Const(_CONSTANTS[name])
            if self._is(_OP, "("):
                raise _error(
                    f"function calls are not supported: {name!r}",
                    t.offset,
                    hint="compare paths and literals with == != < <= > >= in",
                )
            return Path(tuple(name.split(".")))
        raise self._unexpected()

    def list_display(self) -> Expr:
        start = self._advance()  # "["
        self._enter(start)
        try:
            items: list[Expr] = []
            while not self._is(_OP, "]"):
                items.append(self.or_expr())
                if self._is(_OP, ","):
                    self._advance()
                elif not self._is(_OP, "]"):
                    raise self._unexpected("',' or ']'")
            self._advance()
            return ListOf(tuple(items))
        finally:
            self.depth -= 1


def parse(text: str) -> Expr:
    """Parse a ``when:`` expression; raise :class:`ExpressionError` on any syntax error."""
    if not isinstance(text, str):
        raise ExpressionError(
            f"a 'when' expression must be a string, got {type(text).__name__}", offset=0
        )
    return _Parser(_tokenize(text)).parse()


def parse_when(value: str | bool) -> Expr:
    """Parse a ``when:`` value from YAML: a boolean is a constant, a string an expression."""
    if isinstance(value, bool):
        return Const(value)
    if not isinstance(value, str):
        raise ExpressionError(
            f"'when' must be a string or a boolean, got {type(value).__name__}",
            offset=0,
            hint="e.g. when: params.full == true",
        )
    return parse(value)


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(expr: Expr, scope: Mapping[str, Any]) -> bool:
    """Evaluate ``expr`` against ``scope``; the result is always a ``bool``."""
    return bool(_eval(expr, scope))


def _eval(expr: Expr, scope: Mapping[str, Any]) -> Any:
    if isinstance(expr, Path):
        value = lookup(scope, expr.parts)
        if value is MISSING or isinstance(value, Masked):
            return None
        return value
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Compare):
        return _compare(expr.op, _eval(expr.left, scope), _eval(expr.right, scope))
    if isinstance(expr, And):
        return all(_eval(e, scope) for e in expr.operands)
    if isinstance(expr, Or):
        return any(_eval(e, scope) for e in expr.operands)
    if isinstance(expr, Not):
        return not _eval(expr.operand, scope)
    if isinstance(expr, ListOf):
        return [_eval(e, scope) for e in expr.items]
    raise TypeError(f"not an expression: {expr!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and bool(a == b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if _is_list(a) or _is_list(b):
        return (
            _is_list(a)
            and _is_list(b)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or len(a) != len(b):
            return False
        for key, value in a.items():
            other = b.get(key, MISSING)
            if other is MISSING or not _equal(value, other):
                return False
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def _order(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    if not ((_is_number(a) and _is_number(b)) or type(a) is type(b)):
        return False
    try:
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    except Exception:
        return False


def _contains(item: Any, container: Any) -> bool | None:
    """``item in container``; None when ``container`` is null or not a container."""
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        if isinstance(item, str):
            return item in container
        return any(_equal(item, key) for key in container)
    if isinstance(container, (list, tuple, AbstractSet)) or (
        isinstance(container, Sequence) and not isinstance(container, (bytes, bytearray))
    ):
        return any(_equal(item, x) for x in container)
    return None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        return _contains(a, b) is True
    if op == "not in":
        found = _contains(a, b)
        return found is False
    return _order(op, a, b)


# ---------------------------------------------------------------------------------------------
# Introspection


def paths(expr: Expr) -> Iterator[tuple[str, ...]]:
    """Every dotted path ``expr`` reads, in source order (for root validation)."""
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Path):
            yield node.parts
        elif isinstance(node, Compare):
            stack.append(node.right)
            stack.append(node.left)
        elif isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, (And, Or)):
            stack.extend(reversed(node.operands))
        elif isinstance(node, ListOf):
            stack.extend(reversed(node.items))
