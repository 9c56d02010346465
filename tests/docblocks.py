"""The fenced code blocks of README.md and docs/*.md, for the tests that execute them
(importable as ``docblocks``: pytest puts tests/ on sys.path).

A block may opt out of execution with an HTML comment on the line right before its fence, naming
why; opting out is meant to be rare:

    <!-- doc-test: skip: REASON -->            not executed at all
    <!-- doc-test: validate-only: REASON -->   a flow that is validated, not run

A block that shows no command's output and no file a command reads (a directory tree, a
grammar, another program's configuration) says so, and the doc's text says so to the reader:

    <!-- doc-test: illustrative: REASON -->

A fence may be indented (a block inside a list item); its text is taken without the indentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: docs/cli.md is the commands' --help (tests/contract/test_cli_reference.py keeps it exact); its
#: blocks are help texts, and the Example: line of each is run by test_help_example_runs
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]

_FENCE = re.compile(r"^( *)```([A-Za-z0-9_-]*)[ \t]*$")
_MARKER = re.compile(r"^<!--\s*doc-test:\s*(skip|validate-only|illustrative):\s*(.+?)\s*-->$")
_SAVE_AS = re.compile(r"^Save it as `([^`]+)`")
_EXPECT = re.compile(r"#\s*expect:\s*([a-z_]+\.[a-z0-9_]+)")


@dataclass(frozen=True)
class Block:
    doc: str  # README.md, quickstart.md, ...
    index: int  # the block's position among its doc's blocks
    lang: str
    text: str
    line: int  # 1-based line of the opening fence
    marker: str | None  # "skip" / "validate-only" / "illustrative"
    reason: str | None
    save_as: str | None  # "Save it as `NAME`" right after the block

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def is_flow(self) -> bool:
        return (self.lang == "yaml" and re.search(r"^version:\s*1", self.text, re.M) is not None
                and re.search(r"^jobs:", self.text, re.M) is not None)

    @property
    def expected_codes(self) -> list[str]:
        """``# expect: CODE`` lines: the flow is meant to be refused with these issue codes."""
        return _EXPECT.findall(self.text)

    @property
    def flow_id(self) -> str | None:
        m = re.search(r"^flow:\s*\{\s*id:\s*([A-Za-z0-9_-]+)", self.text, re.M) or re.search(
            r"^flow:\s*\n\s+id:\s*([A-Za-z0-9_-]+)", self.text, re.M)
        return m.group(1) if m else None


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, m.group(1)
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != indent + "```":
            j += 1
        marker = reason = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (mm := _MARKER.match(lines[k].strip())):
            marker, reason = mm.group(1), mm.group(2)
        n = j + 1
        while n < len(lines) and not lines[n].strip():
            n += 1
        save = _SAVE_AS.match(lines[n]) if n < len(lines) else None
        text = "\n".join(line.removeprefix(indent) for line in lines[start + 1:j]) + "\n"
        out.append(Block(doc.name, len(out), m.group(2), text, start + 1, marker, reason,
                         save.group(1) if save else None))
        i = j + 1
    return out


def all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc)]


def plugin_sources(doc: str) -> dict[str, str]:
    """The doc's python blocks that are plugin modules (not tests): file name -> source."""
    return {f"doc_{Path(doc).stem.replace('-', '_')}_{b.index}.py": b.text
            for b in all_blocks() if b.doc == doc and b.lang == "python" and b.marker is None
            and not re.search(r"^def test_", b.text, re.M)}
