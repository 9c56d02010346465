"""Docs are part of the product: example flows validate, every command has help with an
Example:, and the docs mention every command, built-in step type and exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"```yaml\n(.*?)```", re.S)
EXPECT = re.compile(r"#\s*expect:\s*([a-z_]+\.[a-z_]+)")

COMMANDS = [
    ["run"], ["resume"], ["validate"], ["schema"], ["graph"], ["explain"], ["doctor"], ["cancel"],
    ["runs", "list"], ["runs", "show"], ["runs", "prune"], ["locks", "list"], ["steps", "list"], ["steps", "show"],
    ["runs", "logs"], ["status"], ["config", "show"],
    ["store", "copy"],
]


def flow_blocks() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for i, m in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            text = m.group(1)
            if re.search(r"^version:\s*1", text, re.M) and re.search(r"^jobs:", text, re.M):
                out.append((f"{doc.name}#{i}", text))
    return out


def doc_plugins(name: str, where: Path) -> list[str]:
    """``--plugin-path`` arguments loading the python examples of the doc a block comes from
    (a flow may use the step types its page defines)."""
    from docblocks import plugin_sources

    sources = plugin_sources(name.split("#")[0])
    if not sources:
        return []
    where.mkdir()
    for file, text in sources.items():
        (where / file).write_text(text, encoding="utf-8")
    return ["--plugin-path", str(where)]


@pytest.mark.parametrize("path", sorted((ROOT / "flows").glob("*.yaml")), ids=lambda p: p.name)
def test_example_flows_validate(cli, path: Path) -> None:
    res = cli("validate", str(path))
    assert res.exit_code == 0, res.stderr


def test_daily_flow_is_first_and_has_modeline() -> None:
    text = (ROOT / "flows" / "daily.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")


@pytest.mark.parametrize("name,text", flow_blocks(), ids=[b[0] for b in flow_blocks()])
def test_doc_flows_validate(cli, tmp_path: Path, name: str, text: str) -> None:
    f = tmp_path / "doc_flow.yaml"
    f.write_text(text, encoding="utf-8")
    res = cli("validate", str(f), *doc_plugins(name, tmp_path / "plugins"))
    expected = EXPECT.findall(text)
    if expected:
        assert res.exit_code == 2
        for code in expected:
            assert code in res.stderr, res.stderr
    else:
        assert res.exit_code == 0, f"{name}:\n{res.stderr}"


def test_there_are_doc_flows() -> None:
    assert len(flow_blocks()) >= 3


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_has_help_with_example(cli, cmd: list[str]) -> None:
    res = cli(*cmd, "--help")
    assert res.exit_code == 0
    assert "Example:" in res.stdout, res.stdout


def all_docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_is_documented(cmd: list[str]) -> None:
    assert f"aetherflow {' '.join(cmd)}" in all_docs_text()


def test_every_builtin_step_type_is_documented() -> None:
    from aetherflow import plugins

    reg = plugins.load(use_entry_points=False).registry
    text = all_docs_text()
    missing = [name for name in reg.steps if f"`{name}`" not in text]
    assert not missing, missing


def test_every_exit_code_is_documented() -> None:
    from aetherflow.errors import ExitCode

    text = (ROOT / "docs" / "exit-codes.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} " in text or f"| {int(code)} |" in text, code


def test_readme_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[A-Za-z0-9_.-]+\.md)(?:#[^)]*)?\)", readme))
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs - linked == set(), sorted(docs - linked)
    assert linked - docs == set(), sorted(linked - docs)


def test_quickstart_links_the_flow_and_steps_references() -> None:
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    for target in ("flow-reference.md", "steps.md", "templates.md"):
        assert f"]({target})" in text, target


def test_docs_point_to_no_unshipped_spec() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"\bthe spec\b|SPEC\.md", text), doc.name
