"""Strict, position-tracking YAML loading: one document in, plain JSON values out.

Contract
--------
``load_yaml(text, file, *, max_bytes=5 MiB, max_depth=64) -> (value, Positions)``

* ``text`` is ``str`` or ``bytes`` (bytes must be UTF-8; a leading BOM is dropped).
* Exactly ONE YAML document is parsed into plain JSON values only: ``dict`` (keys are
  always ``str``), ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
* The returned :class:`Positions` maps every JSON path (a tuple such as
  ``("jobs", 1, "steps", 0, "inputs", "url")``) to the 1-based ``(line, column)`` where
  its VALUE node starts, and every mapping entry to where its KEY starts.
* Every problem is an :class:`~aetherflow.errors.Issue` with a stable code and a
  :class:`~aetherflow.errors.Location` (file, line, column, path). All issues that
  can be found are collected and raised together as ONE
  :class:`~aetherflow.errors.SpecError`. Nothing is returned unless the input is clean.

Issue codes
-----------
``yaml.too_large``          input over ``max_bytes`` (checked before parsing; at 1:1)
``yaml.not_utf8``           bytes that do not decode as UTF-8 (at the first bad byte)
``yaml.syntax``             scanner/parser/reader error; parsing stops there
``yaml.empty``              no document, only comments, or a null document (at 1:1)
``yaml.multiple_documents`` a second document (at its start); parsing stops there
``yaml.duplicate_key``      a key repeated in one mapping (at the repeat; names the
                            line of the first occurrence)
``yaml.alias``              any anchor ``&a`` or alias ``*a``; refused at the FIRST one,
                            nothing is ever expanded ("billion laughs" is cheap to refuse)
``yaml.tag``                any explicit tag (``!!str``, ``!foo``, ``!``, ``!!python/...``)
``yaml.non_string_key``     a mapping or sequence used as a mapping key (``? [a]``)
``yaml.merge_key``          the plain ``<<`` merge key
``yaml.too_deep``           collections nested deeper than ``max_depth``; parsing stops

Scalars (YAML 1.2 core schema, JSON-like; no YAML 1.1 surprises)
-----------------------------------------------------------------
Only PLAIN (unquoted, untagged) scalars are resolved; quoted and block scalars are
always strings. Mapping keys are never resolved: a key is the text of its scalar.

* ``null`` ``Null`` ``NULL`` ``~`` and the empty scalar -> ``None``
* ``true`` ``True`` ``TRUE`` ``false`` ``False`` ``FALSE`` -> ``bool``
* ``[-+]?[0-9]+`` -> ``int``, except with a leading zero (``012`` stays ``"012"``)
* ``0x1F`` / ``0o17`` -> ``int``
* ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`` -> ``float``
* ``.inf`` ``+.inf`` ``-.inf`` ``.nan`` (and the ``.Inf``/``.INF``/``.NaN``/``.NAN``
  spellings) -> ``float``
* anything else is a string: ``on`` ``yes`` ``no`` ``off`` ``y`` ``12:30``
  ``2026-11-20`` ``1_000`` ``0b101`` ...

Implementation: the (libyaml C, when available) *event* parser is driven directly and
values are built from events; ``yaml.load``/``safe_load`` and their constructors are
never used, so no Python object other than the JSON types above can ever be created.
``yaml`` is imported lazily, inside functions, to keep CLI start-up fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from aetherflow.errors import Issue, Location, SpecError, format_path

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "Path",
    "Positions",
    "load_yaml",
]

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64

Path = tuple[str | int, ...]
"""A JSON path: mapping keys (``str``) and sequence indexes (``int``)."""

_Pos = tuple[int, int]


# --------------------------------------------------------------------------- paths


class Positions:
    """Where each JSON path of a loaded document sits in its file (1-based line, column).

    ``values`` maps a path to the start of its value node; ``keys`` maps the path of a
    mapping entry to the start of its key token.
    """

    __slots__ = ("_keys", "_values")

    def __init__(
        self,
        values: dict[Path, tuple[int, int]] | None = None,
        keys: dict[Path, tuple[int, int]] | None = None,
    ) -> None:
        self._values: dict[Path, tuple[int, int]] = values if values is not None else {}
        self._keys: dict[Path, tuple[int, int]] = keys if keys is not None else {}

    def get(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of the value at ``path``, else of its nearest recorded ancestor, else (1, 1)."""
        p = tuple(path)
        values = self._values
        while True:
            pos = values.get(p)
            if pos is not None:
                return pos
            if not p:
                return (1, 1)
            p = p[:-1]

    def key(self, path: Sequence[str | int]) -> tuple[int, int]:
        """Position of the key token of the mapping entry ``path`` (falls back to :meth:`get`)."""
        pos = self._keys.get(tuple(path))
        return pos if pos is not None else self.get(path)

    def location(
        self, file: str | None, path: Sequence[str | int], *, key: bool = False
    ) -> Location:
        """A :class:`Location` for ``path`` (its key token when ``key=True``)."""
        line, column = self.key(path) if key else self.get(path)
        return Location(file, line, column, format_path(path))

    def tables(self) -> tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, int]]]:
        """The ``(values, keys)`` tables themselves, not copies (the validation cache stores
        them; ``Positions(values, keys)`` rebuilds this object). Do not mutate them."""
        return self._values, self._keys

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and path in self._values

    def __repr__(self) -> str:
        return f"Positions({len(self._values)} values, {len(self._keys)} keys)"


# ------------------------------------------------------------------------- scalars


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {
    "true": True, "True": True, "TRUE": True,
    "false": False, "False": False, "FALSE": False,
}  # fmt: skip
_SPECIAL_FLOATS = {
    **{f"{sign}.{inf}": (-math.inf if sign == "-" else math.inf)
       for sign in ("", "+", "-") for inf in ("inf", "Inf", "INF")},
    **{f".{nan}": math.nan for nan in ("nan", "NaN", "NAN")},
}  # fmt: skip
_NUMBER_START = frozenset("0123456789+-.")
_DIGITS = re.compile(r"[-+]?[0-9]+")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_OCT = re.compile(r"0o[0-7]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _resolve_plain(text: str) -> Any:
    """Resolve a plain scalar by the JSON-like rules in the module docstring."""
    if text in _NULLS:
        return None
    if text[0] not in _NUMBER_START:
        return _BOOLS.get(text, text)
    if _DIGITS.fullmatch(text):
        if _LEADING_ZERO.match(text):
            return text
        try:
            return int(text)
        except ValueError:  # beyond sys.get_int_max_str_digits(): keep the text
            return text
    if _FLOAT.fullmatch(text):
        return float(text)
    special = _SPECIAL_FLOATS.get(text)
    if special is not None:
        return special
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    return text


# -------------------------------------------------------------------------- events


class _Abort(Exception):
    """Internal: stop parsing now (the reason is already in the issue list)."""


_NEED_KEY: Any = object()  # mapping frame waits for a key
_IN_KEY: Any = object()  # mapping frame is building a complex (refused) key
_BAD_KEY: Any = object()  # mapping frame waits for the value of a refused key


class _Frame:
    __slots__ = ("is_map", "key", "kpath", "node", "path")

    def __init__(self, is_map: bool, node: Any, path: Path) -> None:
        self.is_map = is_map
        self.node = node
        self.path = path
        self.key: Any = _NEED_KEY
        self.kpath: Path = path


class _Builder:
    """Turns a parser's event stream into JSON values plus positions."""

    def __init__(self, file: str, max_depth: int) -> None:
        self.file = file
        self.max_depth = max_depth
        self.issues: list[Issue] = []
        self.values: dict[Path, _Pos] = {}
        self.keys: dict[Path, _Pos] = {}
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.documents = 0

    def current_path(self) -> Path:
        """Path of the node being parsed (used to place syntax errors)."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.is_map:
            return top.kpath if top.key is not _NEED_KEY else top.path
        return top.path + (len(top.node),)

    def _issue(
        self, code: str, message: str, mark: Any, path: Path, hint: str | None = None
    ) -> None:
        loc = Location(self.file, mark.line + 1, mark.column + 1, format_path(path))
        self.issues.append(Issue(code, message, loc, hint))

    def run(self, get_event: Any) -> None:
        from yaml import events as ev_mod

        scalar_ev = ev_mod.ScalarEvent
        map_start = ev_mod.MappingStartEvent
        map_end = ev_mod.MappingEndEvent
        seq_start = ev_mod.SequenceStartEvent
        seq_end = ev_mod.SequenceEndEvent
        alias_ev = ev_mod.AliasEvent
        doc_start = ev_mod.DocumentStartEvent
        stream_end = ev_mod.StreamEndEvent

        values = self.values
        keys = self.keys
        stack = self.stack
        issue = self._issue
        max_depth = self.max_depth
        resolve = _resolve_plain
        need_key, in_key, bad_key = _NEED_KEY, _IN_KEY, _BAD_KEY
        top: _Frame | None = None

        while True:
            event = get_event()
            cls = type(event)
            value: Any

            if cls is scalar_ev:
                mark = event.start_mark
                if top is not None and top.is_map and top.key is need_key:
                    # A mapping key: always the text of the scalar, never resolved.
                    key: str = event.value
                    kpath = top.path + (key,)
                    if event.anchor is not None:
                        issue(
                            "yaml.alias", "anchors (&) and aliases (*) are not allowed", mark, kpath
                        )
                        raise _Abort
                    if event.tag is not None:
                        issue(
                            "yaml.tag", f"explicit tags are not allowed: {event.tag}", mark, kpath
                        )
                    if key == "<<" and event.implicit[0]:
                        issue(
                            "yaml.merge_key",
                            "the '<<' merge key is not allowed",
                            mark,
                            kpath,
                            "write the keys out in full",
                        )
                    pos = (mark.line + 1, mark.column + 1)
                    if key in top.node:
                        first = keys[kpath][0]
                        issue(
                            "yaml.duplicate_key",
                            f"duplicate key {key!r} (first defined at line {first})",
                            mark,
                            kpath,
                        )
                    else:
                        keys[kpath] = pos
                    top.key = key
                    top.kpath = kpath
                    continue
                # A value.
                if top is None:
                    path: Path = ()
                elif top.is_map:
                    path = top.kpath
                else:
                    path = top.path + (len(top.node),)
                if event.anchor is not None:
                    issue("yaml.alias", "anchors (&) and aliases (*) are not allowed", mark, path)
                    raise _Abort
                values[path] = (mark.line + 1, mark.column + 1)
                if event.tag is not None:
                    issue("yaml.tag", f"explicit tags are not allowed: {event.tag}", mark, path)
                    value = event.value
                elif event.implicit[0]:
                    value = resolve(event.value)
                else:
                    value = event.value

            elif cls is map_start or cls is seq_start:
                mark = event.start_mark
                if top is None:
                    path = ()
                elif top.is_map:
                    if top.key is need_key:
                        top.key = in_key
                        top.kpath = top.path + ("?",)
                        issue(
                            "yaml.non_string_key",
                            "mapping keys must be plain strings, not a "
                            + ("mapping" if cls is map_start else "sequence"),
                            mark,
                            top.path,
                        )
                    path = top.kpath
                else:
                    path = top.path + (len(top.node),)
                if event.anchor is not None:
                    issue("yaml.alias", "anchors (&) and aliases (*) are not allowed", mark, path)
                    raise _Abort
                if len(stack) >= max_depth:
                    issue(
                        "yaml.too_deep",
                        f"nesting deeper than {max_depth} levels",
                        mark,
                        path,
                    )
                    raise _Abort
                values[path] = (mark.line + 1, mark.column + 1)
                if event.tag is not None:
                    issue("yaml.tag", f"explicit tags are not allowed: {event.tag}", mark, path)
                top = _Frame(True, {}, path) if cls is map_start else _Frame(False, [], path)
                stack.append(top)
                continue

            elif cls is map_end or cls is seq_end:
                value = stack.pop().node
                top = stack[-1] if stack else None

            elif cls is alias_ev:
                issue(
                    "yaml.alias",
                    "anchors (&) and aliases (*) are not allowed",
                    event.start_mark,
                    self.current_path(),
                )
                raise _Abort

            elif cls is doc_start:
                self.documents += 1
                if self.documents > 1:
                    issue(
                        "yaml.multiple_documents",
                        "only one YAML document is allowed per file",
                        event.start_mark,
                        (),
                    )
                    raise _Abort
                continue

            elif cls is stream_end:
                return

            else:  # StreamStart, DocumentEnd
                continue

            # Attach the finished node `value` to its parent.
            if top is None:
                self.root = value
            elif top.is_map:
                k = top.key
                if k is in_key:  # the refused complex key is complete; its value follows
                    top.key = bad_key
                else:
                    if k is not bad_key:
                        top.node[k] = value
                    top.key = need_key
            else:
                top.node.append(value)


# --------------------------------------------------------------------------- entry


def _line_col(text: str, index: int) -> _Pos:
    """1-based (line, column) of character ``index`` in ``text``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _fail(
    code: str, message: str, file: str, pos: _Pos = (1, 1), hint: str | None = None
) -> SpecError:
    return SpecError([Issue(code, message, Location(file, pos[0], pos[1], ""), hint)], file=file)


def load_yaml(
    text: str | bytes,
    file: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, Positions]:
    """Parse ONE YAML document into JSON values and their positions (see module docstring).

    Raises :class:`SpecError` carrying every issue found.
    """
    # --- size and encoding, before any parsing
    if isinstance(text, str):
        size = len(text)
        if max_bytes < size * 4:  # only encode when the character count is not conclusive
            size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise _fail(
                "yaml.too_large", f"input is {size} bytes, over the limit of {max_bytes}", file
            )
        source = text
    else:
        raw = bytes(text)
        if len(raw) > max_bytes:
            raise _fail(
                "yaml.too_large", f"input is {len(raw)} bytes, over the limit of {max_bytes}", file
            )
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = raw[: exc.start].decode("utf-8")
            raise _fail(
                "yaml.not_utf8",
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                file,
                _line_col(good, len(good)),
                "save the file as UTF-8",
            ) from None
    if source.startswith("\ufeff"):
        source = source[1:]

    # --- events -> values
    import yaml

    loader_cls: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    builder = _Builder(file, max_depth)
    loader: Any = None
    try:
        loader = loader_cls(source)
        builder.run(loader.get_event)
    except _Abort:
        pass
    except UnicodeEncodeError as exc:  # lone surrogates in a str input
        raise _fail(
            "yaml.not_utf8",
            f"not valid UTF-8: unencodable character at offset {exc.start}",
            file,
            _line_col(source, exc.start),
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        from aetherflow.spec.syntax_help import explain  # the parser's words -> an operator's

        cmark = exc.context_mark
        message, hint = explain(exc.problem, exc.context, cmark.line + 1 if cmark is not None else None,
                                source, line, column)
        if "nesting depth" in (exc.problem or ""):
            # libyaml's own limit (PyYAML 6.0.4 and later): its scanner looks ahead through a
            # run of `[`/`{` and can stop before the events reach our max_depth check
            builder.issues.append(
                Issue("yaml.too_deep", f"nesting deeper than {max_depth} levels",
                      Location(file, line, column, format_path(builder.current_path())))
            )
        else:
            builder.issues.append(
                Issue(
                    "yaml.syntax",
                    message,
                    Location(file, line, column, format_path(builder.current_path())),
                    hint,
                )
            )
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        index = getattr(exc, "position", 0) or 0
        if loader_cls is not yaml.SafeLoader:  # libyaml reports byte offsets
            index = len(source.encode("utf-8")[:index].decode("utf-8", "ignore"))
        char = getattr(exc, "character", None)
        reason = getattr(exc, "reason", None) or "unacceptable character"
        what = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        builder.issues.append(
            Issue(
                "yaml.syntax",
                f"unacceptable character {what}: {reason}",
                Location(file, *_line_col(source, index), format_path(builder.current_path())),
            )
        )
    else:
        if builder.documents == 0 or builder.root is None:
            builder.issues.append(
                Issue("yaml.empty", "the document is empty", Location(file, 1, 1, ""))
            )
    finally:
        if loader is not None:
            loader.dispose()

    if builder.issues:
        raise SpecError(builder.issues, file=file)
    return builder.root, Positions(builder.values, builder.keys)
