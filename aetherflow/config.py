"""The configuration file (SPEC section 13): one TOML file (``tomllib``) with settings for every
command, each value kept with where it was written.

Search order, first found: ``--config FILE``, ``$AETHERFLOW_CONFIG``,
``$AETHERFLOW_HOME/config.toml``, ``$XDG_CONFIG_HOME/aetherflow/config.toml`` (else
``~/.config/aetherflow/config.toml``), ``/etc/aetherflow/config.toml``. A file named by the
option or the variable must exist; the others are skipped when absent. Only the first file found
is read (files are not merged).

Keys (``schemas/config.schema.json``, the one source of truth for their shape): ``state``,
``events_log``, ``plugin_paths``, ``log_format``, ``on_locked``, ``[metrics] textfile``,
``[retention] max_age``, ``[[notify]]``. Relative paths are relative to the file's directory.
Unknown keys, wrong types and TOML syntax errors are located (file:line:column, exit 2).

This module only reads the file; ``settings.py`` merges it under the flags and the environment
(precedence: flags > environment > config file > defaults).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetherflow.durations import EXAMPLES, parse_duration
from aetherflow.errors import Issue, Location, SpecError, UsageError
from aetherflow.model import NotifySpec, empty_map

__all__ = [
    "SYSTEM_CONFIG",
    "ConfigFile",
    "OnLocked",
    "Setting",
    "candidates",
    "load_config",
    "parse_on_locked",
    "parse_toml",
]

SYSTEM_CONFIG = Path("/etc/aetherflow/config.toml")
#: a config file larger than this is refused (it is a handful of lines)
MAX_CONFIG_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Setting:
    """An effective value and where it came from: a flag (``--state``), an environment
    variable's name, ``FILE:LINE:COLUMN`` of the config file, or ``default``."""

    value: Any
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OnLocked:
    """What ``run`` does when the flow lock or the business key is held by another run:
    ``fail`` (exit 3), ``skip`` (exit 0, nothing recorded) or ``wait`` (up to ``wait_seconds``;
    ``None``: as long as it takes)."""

    mode: str = "fail"
    wait_seconds: float | None = None

    def __str__(self) -> str:
        if self.mode == "wait" and self.wait_seconds is not None:
            return f"wait={self.wait_seconds:g}"
        return self.mode


def parse_on_locked(text: str, where: str) -> OnLocked:
    """``fail``, ``skip``, ``wait`` or ``wait=SECONDS`` (a duration: ``600``, ``10m``)."""
    mode, sep, amount = text.strip().partition("=")
    if mode in ("fail", "skip") and not sep:
        return OnLocked(mode=mode)
    if mode == "wait":
        if not sep:
            return OnLocked(mode="wait")
        seconds = parse_duration(amount)
        if seconds is not None:
            return OnLocked(mode="wait", wait_seconds=seconds)
        raise UsageError(f"{where} {text!r}: wait=SECONDS takes a duration ({EXAMPLES})", code="usage.on_locked")
    raise UsageError(f"{where} {text!r}: use fail, skip, wait or wait=SECONDS", code="usage.on_locked")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigFile:
    """The config file read (``path`` None: none found), how it was found, where else was
    looked, and its settings by name (``metrics.textfile``, ``retention.max_age`` for the
    tables' keys), each with its ``FILE:LINE:COLUMN``."""

    path: str | None = None
    found_by: str = ""
    looked_in: tuple[str, ...] = ()
    values: Mapping[str, Setting] = field(default_factory=empty_map)


def candidates(env: Mapping[str, str], *, system_file: Path = SYSTEM_CONFIG) -> list[tuple[str, Path]]:
    """The default locations in search order, each with how it is named in messages."""
    out: list[tuple[str, Path]] = []
    home = env.get("AETHERFLOW_HOME")
    if home:
        out.append(("$AETHERFLOW_HOME/config.toml", Path(home).expanduser() / "config.toml"))
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        out.append(("$XDG_CONFIG_HOME/aetherflow/config.toml", Path(xdg) / "aetherflow" / "config.toml"))
    else:
        user = Path(env.get("HOME") or Path.home())
        out.append(("~/.config/aetherflow/config.toml", user / ".config" / "aetherflow" / "config.toml"))
    out.append((str(system_file), system_file))
    return out


def load_config(env: Mapping[str, str], flag: str | None = None, *, system_file: Path = SYSTEM_CONFIG) -> ConfigFile:
    """The first config file of the search order, read and checked (``SpecError``, exit 2, with
    every problem located; ``UsageError`` for a named file that is missing or unreadable)."""
    named = [("--config", flag), ("AETHERFLOW_CONFIG", env.get("AETHERFLOW_CONFIG"))]
    for how, value in named:
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                what = "is a directory" if path.is_dir() else "does not exist"
                raise UsageError(f"config file {value} (from {how}) {what}", code="config.not_found")
            return _read(path, how, ())
    looked: list[str] = []
    for how, path in candidates(env, system_file=system_file):
        looked.append(str(path))
        if path.is_file():
            return _read(path, how, tuple(looked[:-1]))
    return ConfigFile(path=None, found_by="none found", looked_in=tuple(looked))


def _read(path: Path, how: str, looked: tuple[str, ...]) -> ConfigFile:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"config file {path} (from {how}): {exc.strerror or exc}", code="config.unreadable") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB", code="config.too_large")
    name = str(path)
    data, positions = parse_toml(raw, name)
    from aetherflow.spec.schema import SchemaValidator, load_schema

    issues = SchemaValidator(load_schema("config"), check=False).validate(data, file=name, positions=positions)
    issues = [Issue("config." + i.code.removeprefix("schema."), i.message, i.location, i.hint) for i in issues]
    values, more = _settings(data, positions, path)
    issues.extend(more)
    if issues:
        raise SpecError(issues, file=name)
    return ConfigFile(path=name, found_by=how, looked_in=looked, values=values)


def _settings(data: Mapping[str, Any], positions: Any, path: Path) -> tuple[dict[str, Setting], list[Issue]]:
    """Each setting of schema-checked data with its location; relative paths made absolute."""
    base = path.parent.absolute()
    out: dict[str, Setting] = {}
    issues: list[Issue] = []

    def where(keys: tuple[str | int, ...]) -> str:
        loc = positions.location(str(path), keys, key=True)
        return f"{loc.file}:{loc.line}:{loc.column}"

    def local(p: Any) -> Any:
        if not isinstance(p, str) or "://" in p:
            return p
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else base / q)

    for key in ("state", "events_log", "log_format", "on_locked"):
        if key in data:
            value = data[key]
            out[key] = Setting(local(value) if key in ("state", "events_log") else value, where((key,)))
    if isinstance(data.get("plugin_paths"), list):
        out["plugin_paths"] = Setting(tuple(local(p) for p in data["plugin_paths"]), where(("plugin_paths",)))
    if isinstance(data.get("on_locked"), str):
        try:
            out["on_locked"] = Setting(parse_on_locked(data["on_locked"], "on_locked"), where(("on_locked",)))
        except UsageError as exc:
            issues.append(Issue("config.on_locked", exc.message, positions.location(str(path), ("on_locked",))))
    metrics = data.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("textfile"), str):
        out["metrics.textfile"] = Setting(local(metrics["textfile"]), where(("metrics", "textfile")))
    retention = data.get("retention")
    if isinstance(retention, dict) and isinstance(retention.get("max_age"), str):
        seconds = parse_duration(retention["max_age"], unit_required=True)
        if seconds is None:
            issues.append(Issue("config.duration", f"max_age {retention['max_age']!r} is not a duration with a unit "
                                f"({EXAMPLES.removeprefix('e.g. 90, ')})",
                                positions.location(str(path), ("retention", "max_age"))))
        else:
            out["retention.max_age"] = Setting((retention["max_age"], seconds), where(("retention", "max_age")))
    notify = data.get("notify")
    if isinstance(notify, list):
        specs = []
        for i, item in enumerate(notify):
            if isinstance(item, dict) and "on" in item:
                try:
                    specs.append(NotifySpec.from_data(item, where(("notify", i))))
                except (KeyError, TypeError, ValueError):
                    continue  # the schema issue says what is wrong with it
        out["notify"] = Setting(tuple(specs), where(("notify",)))
    return out, issues


# ---------------------------------------------------------------------------------------------
# TOML with positions: tomllib parses; a small scanner finds where each key was written


_TOML_ERROR_AT = re.compile(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$")
_TOML_ERROR_END = re.compile(r"^(.*?)\s*\(at end of document\)$")


def parse_toml(raw: bytes, name: str) -> tuple[dict[str, Any], Any]:
    """The document and the positions (``spec.loader.Positions``) of its keys and values; a
    syntax error is a ``SpecError`` located at its line and column."""
    import tomllib

    from aetherflow.spec.loader import Positions

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError([Issue("config.syntax", "not UTF-8 text", Location(name, line, 1))], file=name) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, col = 1, 1
        m = _TOML_ERROR_AT.match(message)
        if m is not None:
            message, line, col = m.group(1), int(m.group(2)), int(m.group(3))
        else:
            end = _TOML_ERROR_END.match(message)
            if end is not None:
                message = end.group(1)
                line = text.count("\n") + 1
                col = len(text.rsplit("\n", 1)[-1]) + 1
        raise SpecError([Issue("config.syntax", f"TOML: {message}", Location(name, line, col))], file=name) from exc
    values, keys = _Scanner(text).run()
    return data, Positions(values, keys)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    """Finds the 1-based (line, column) of every key (and the start of its value) in a TOML
    text that ``tomllib`` accepted: table headers, arrays of tables, dotted keys, inline tables
    and arrays of inline tables. It does not check the syntax; ``tomllib`` did."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.values: dict[tuple[str | int, ...], tuple[int, int]] = {}
        self.keys: dict[tuple[str | int, ...], tuple[int, int]] = {}
        self.arrays_of_tables: dict[tuple[str | int, ...], int] = {}

    def pos(self) -> tuple[int, int]:
        return self.line, self.i - self.line_start + 1

    def run(self) -> tuple[dict[tuple[str | int, ...], tuple[int, int]], dict[tuple[str | int, ...], tuple[int, int]]]:
        table: tuple[str | int, ...] = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.text):
                break
            if self.text[self.i] == "[":
                table = self.header()
            else:
                self.pair(table)
        return self.values, self.keys

    # lexing -----------------------------------------------------------------------------
    def skip(self, *, newlines: bool) -> None:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c == "#":
                while self.i < len(t) and t[self.i] != "\n":
                    self.i += 1
            elif c == "\n" and newlines:
                self.i += 1
                self.line += 1
                self.line_start = self.i
            elif c in " \t\r":
                self.i += 1
            else:
                return

    def advance_to(self, end: int) -> None:
        """Move to ``end``, counting the newlines passed."""
        chunk = self.text[self.i:end]
        n = chunk.count("\n")
        if n:
            self.line += n
            self.line_start = self.i + chunk.rfind("\n") + 1
        self.i = end

    def string(self) -> str:
        """A basic, literal or multi-line string at ``i``; returns its raw content."""
        t = self.text
        q = t[self.i]
        if t.startswith(q * 3, self.i):
            end = t.find(q * 3, self.i + 3)
            while end != -1 and q == '"' and _escaped(t, end):
                end = t.find(q * 3, end + 1)
            end = len(t) if end == -1 else end
            while t.startswith(q, end + 3):  # up to two quotes may close the content
                end += 1
            content = t[self.i + 3:end]
            self.advance_to(end + 3)
            return content
        j = self.i + 1
        while j < len(t) and t[j] != q and t[j] != "\n":
            j += 2 if q == '"' and t[j] == "\\" else 1
        content = t[self.i + 1:j]
        self.advance_to(min(j + 1, len(t)))
        return _unescape(content) if q == '"' else content

    def key(self) -> list[tuple[str, tuple[int, int]]]:
        """A dotted key: its parts with their positions."""
        parts: list[tuple[str, tuple[int, int]]] = []
        while True:
            self.skip(newlines=False)
            at = self.pos()
            if self.i < len(self.text) and self.text[self.i] in "\"'":
                parts.append((self.string(), at))
            else:
                m = _BARE_KEY.match(self.text, self.i)
                if m is None:
                    return parts
                parts.append((m.group(0), at))
                self.i = m.end()
            self.skip(newlines=False)
            if self.i < len(self.text) and self.text[self.i] == ".":
                self.i += 1
                continue
            return parts

    # structure ----------------------------------------------------------------------------
    def header(self) -> tuple[str | int, ...]:
        double = self.text.startswith("[[", self.i)
        self.i += 2 if double else 1
        parts = self.key()
        names = tuple(p for p, _ in parts)
        self.i = self.text.find("\n", self.i) if "\n" in self.text[self.i:] else len(self.text)
        if double:
            n = self.arrays_of_tables.get(names, 0)
            self.arrays_of_tables[names] = n + 1
            self.keys.setdefault(names, parts[-1][1])
            self.values.setdefault(names, parts[0][1])
            path: tuple[str | int, ...] = (*names, n)
            self.keys[path] = self.values[path] = parts[-1][1]
            return path
        self.keys.setdefault(names, parts[-1][1])
        self.values.setdefault(names, parts[-1][1])
        return names

    def pair(self, table: tuple[str | int, ...]) -> None:
        parts = self.key()
        if not parts:  # not a key: skip the line (tomllib accepted the file, so this is rare)
            end = self.text.find("\n", self.i)
            self.i = len(self.text) if end == -1 else end
            return
        path = table
        for name, at in parts:
            path = (*path, name)
            self.keys.setdefault(path, at)
        self.skip(newlines=False)
        if self.i < len(self.text) and self.text[self.i] == "=":
            self.i += 1
        self.skip(newlines=False)
        self.values[path] = self.pos()
        self.value(path)

    def value(self, path: tuple[str | int, ...]) -> None:
        t = self.text
        if self.i >= len(t):
            return
        c = t[self.i]
        if c in "\"'":
            self.string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(newlines=True)
                if self.i >= len(t) or t[self.i] == "]":
                    self.i += 1
                    return
                if t[self.i] == ",":
                    self.i += 1
                    continue
                item = (*path, index)
                self.values[item] = self.pos()
                self.value(item)
                index += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip(newlines=False)
                if self.i >= len(t) or t[self.i] == "}":
                    self.i += 1
                    return
                if t[self.i] == ",":
                    self.i += 1
                    continue
                before = self.i
                self.pair(path)
                if self.i == before:  # nothing understood: give up on this table
                    return
        else:
            m = re.compile(r"[^\s,\]}#]+").match(t, self.i)
            self.i = m.end() if m else self.i + 1


def _escaped(text: str, quote_at: int) -> bool:
    """Whether the quote at ``quote_at`` is preceded by an odd number of backslashes."""
    n = 0
    j = quote_at - 1
    while j >= 0 and text[j] == "\\":
        n += 1
        j -= 1
    return n % 2 == 1


def _unescape(content: str) -> str:
    """A basic string's content with its simple escapes applied (keys rarely have any)."""
    if "\\" not in content:
        return content
    import json

    try:
        return str(json.loads(f'"{content}"'))
    except ValueError:
        return content
