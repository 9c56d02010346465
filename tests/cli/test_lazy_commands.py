"""An invocation imports only the module of the command it runs (cli/app.py COMMAND_MODULES);
help, unknown commands and shell completion still see every command. Real subprocesses: the
point is which modules one CLI process imports, which an in-process runner cannot show."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import probe_main

ONE_STEP = """
version: 1
flow:
  id: one
jobs:
  - id: j
    steps:
      - id: s
        type: noop
"""

COMMAND_MODULES = {"aetherflow.cli.runcmd", "aetherflow.cli.inspect", "aetherflow.cli.runs", "aetherflow.cli.ops",
                   "aetherflow.cli.store"}

def probe(*args: str) -> tuple[int, set[str]]:
    """The exit code and the ``aetherflow.cli`` modules of one CLI process."""
    code, modules, _, _ = probe_main(*args)
    return code, {m for m in modules if m.startswith("aetherflow.cli")}


def help_commands(text: str) -> list[str]:
    """The command names of the ``Commands:`` section of a help text."""
    lines = text.split("Commands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]


def test_run_imports_only_its_command_module(home: Path, write_flow) -> None:
    """`run` (plain or with --help) imports just its own command module."""
    flow = write_flow(ONE_STEP)
    for args in (("run", str(flow)), ("run", "--help")):
        code, modules = probe(*args)
        assert code == 0
        assert modules & COMMAND_MODULES == {"aetherflow.cli.runcmd"}, sorted(modules)


@pytest.mark.parametrize(("args", "module"), [
    (("runs", "list"), "aetherflow.cli.runs"),
    (("steps", "list"), "aetherflow.cli.inspect"),
    (("resume", "--help"), "aetherflow.cli.runcmd"),
])
def test_other_commands_import_only_their_module(home: Path, args: tuple[str, ...], module: str) -> None:
    code, modules = probe(*args)
    assert code == 0
    assert modules & COMMAND_MODULES == {module}, sorted(modules)


def test_command_map_names_every_command() -> None:
    from typer.main import get_command

    from aetherflow.cli.app import COMMAND_MODULES as MAP
    from aetherflow.cli.app import app

    assert sorted(MAP) == sorted(get_command(app).commands)  # type: ignore[attr-defined]
    assert set(MAP.values()) == COMMAND_MODULES


def test_root_help_lists_every_command(home: Path, af) -> None:
    from typer.main import get_command

    from aetherflow.cli.app import app

    every = list(get_command(app).commands)  # type: ignore[attr-defined]
    code, modules = probe("--help")
    assert code == 0
    assert modules >= COMMAND_MODULES
    res = af("--help")
    assert res.exit_code == 0
    assert help_commands(res.stdout) == every
    res = af()  # no arguments: help on stderr, usage exit code
    assert res.exit_code == 2
    assert help_commands(res.stderr) == every


def test_unknown_command_still_suggests_from_every_command(home: Path, af) -> None:
    res = af("nosuch")
    assert res.exit_code == 2
    assert "No such command 'nosuch'" in res.stderr
    assert res.stdout == ""
    res = af("lcoks")
    assert res.exit_code == 2
    assert "Did you mean 'locks'?" in res.stderr


def test_shell_completion_offers_every_command(home: Path, af) -> None:
    from aetherflow.cli.app import COMMAND_MODULES as MAP

    res = af(env={"_AETHERFLOW_COMPLETE": "complete_bash", "COMP_WORDS": "aetherflow ", "COMP_CWORD": "1"})
    assert res.exit_code == 0
    assert set(res.stdout.split()) == set(MAP)
