"""The YAML parser's syntax errors in an operator's words, with the fix.

PyYAML (and libyaml) say what the parser met ("found character that cannot start any token",
"did not find expected key"); an operator needs the cause (a tab in the indentation, a line
indented differently from its neighbours, a ``: `` inside an unquoted value) and what to
change. :func:`explain` looks at the parser's problem, its context and the offending line of
the source and returns ``(message, hint)``; the position stays the parser's. A problem it does
not know keeps the parser's own words.
"""

from __future__ import annotations

__all__ = ["explain"]


def explain(
    problem: str | None,
    context: str | None,
    context_line: int | None,
    source: str,
    line: int,
    column: int,
) -> tuple[str, str | None]:
    """``(message, hint)`` for a syntax error at 1-based ``line``/``column`` of ``source``;
    ``context_line`` is the 1-based line the parser's context (``while parsing ...``) starts at."""
    problem = problem or "invalid YAML"
    text = _line(source, line)
    at = f" at line {context_line}" if context_line else ""
    if "tab character" in problem or ("cannot start any token" in problem and "\t" in _indent_of(text, column)):
        return (
            f"a tab character in the indentation of line {line}: YAML indents with spaces only",
            f"replace the tab(s) at the start of line {line} with spaces (editors: 'convert indentation to spaces')",
        )
    if "cannot start any token" in problem:
        char = text[column - 1] if 0 < column <= len(text) else "?"
        return (
            f"{char!r} cannot start an unquoted value in YAML",
            f"put the value in quotes, e.g. \"{text[column - 1:].strip()}\"",
        )
    if problem.startswith("mapping values are not allowed"):
        prev_no, prev = _previous(source, line)
        if prev is not None and _indent(text) > _indent(prev) and not prev.rstrip().endswith(":"):
            return (
                f"line {line} is indented more than line {prev_no} above it, so a new key cannot start there",
                f"indent it like line {prev_no} (the same column, spaces only); if it continues the value "
                f"of line {prev_no}, put that whole value in quotes",
            )
        return (
            "': ' inside an unquoted value: YAML reads it as the start of a new key",
            "put the whole value in quotes, e.g. description: \"Load: the sales\"",
        )
    if problem == "did not find expected key" or problem.startswith("expected <block end>"):
        if text.lstrip().startswith("- ") or text.strip() == "-":
            return (
                f"a list item ('- ') where a key of the mapping that starts{at} was expected",
                "indent the list under the key it belongs to, and start every item of one list in the same column",
            )
        return (
            f"the indentation of line {line} does not match the keys of the mapping that starts{at}",
            "the keys of one mapping start in the same column: indent this line like its siblings (spaces only)",
        )
    if problem == "did not find expected '-' indicator":
        return (
            f"line {line} is not indented like the items of the list that starts{at}",
            "start every item of one list in the same column with '- ', and indent an item's other keys "
            "under its first key",
        )
    if problem.startswith(("did not find expected ',' or", "expected ',' or")):  # libyaml, PyYAML
        kind, close = ("[ ... ] list", "]") if "or ']'" in problem else ("{ ... } mapping", "}")
        return (
            f"the {kind} opened{at} is not closed where YAML expected it",
            f"close it with '{close}', and quote any item that contains , : [ ] {{ }} or #",
        )
    if problem == "found unexpected end of stream" and context and "quoted scalar" in context:
        return (f"a quoted string opened{at} is never closed", "add the closing quote")
    if problem == "could not find expected ':'":
        return (
            f"line {context_line or line} is neither 'key: value' nor '- item'",
            "write 'key: value' (with a space after ':'), or put the text in quotes if it is a value",
        )
    if problem == "found unknown escape character":
        return (
            "an unknown backslash escape in a double-quoted string",
            "use single quotes ('C:\\path' keeps backslashes), or write '\\\\' for each backslash",
        )
    return problem, (f"{context}{at}" if context else None)


def _line(source: str, line: int) -> str:
    lines = source.split("\n", line)
    return lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" \t"))


def _indent_of(text: str, column: int) -> str:
    """The leading whitespace of ``text``, when ``column`` lies in it."""
    lead = text[: _indent(text)]
    return lead if column <= len(lead) + 1 else ""


def _previous(source: str, line: int) -> tuple[int, str | None]:
    """The nearest line above ``line`` that is neither blank nor a comment."""
    lines = source.split("\n", line)
    for n in range(min(line - 1, len(lines)), 0, -1):
        text = lines[n - 1].rstrip("\r")
        if text.strip() and not text.lstrip().startswith("#"):
            return n, text
    return 0, None
