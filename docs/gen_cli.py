"""Regenerate docs/cli.md from the commands' --help (a test keeps the two in step):

    python docs/gen_cli.py
"""

from __future__ import annotations

import sys
from pathlib import Path

COMMANDS = [
    ("run", "Start a run."),
    ("resume", "Continue a run, deliver an event, or sweep due timers."),
    ("validate", "Check a flow file."),
    ("runs list", "Recent runs."),
    ("runs show", "One run in detail."),
    ("runs prune", "Delete old finished runs."),
    ("runs logs", "What a run's steps wrote."),
    ("cancel", "Cancel a run."),
    ("locks list", "Held locks."),
    ("store copy", "Copy every run from one store to another."),
    ("steps list", "Registered step types."),
    ("steps show", "One step type."),
    ("schema", "The JSON Schemas."),
    ("graph", "The job/step graph."),
    ("explain", "Where resolved values come from."),
    ("doctor", "What a flow needs that is missing."),
    ("status", "One screen for an operator."),
    ("config show", "Every setting and where it comes from."),
]

HEADER = """# CLI reference

Generated from `--help` by `python docs/gen_cli.py`; `tests/contract/test_cli_reference.py` fails
when this file and the program disagree. Every command accepts `--state PATH` (or
`AETHERFLOW_STATE`): a database file, or a `postgresql://` URL ([scale-out.md](scale-out.md));
commands that do not use the store accept it for uniformity. Commands that
take a run id look in that store first, then in every store this machine has used (see
[state.md](state.md)). Exit codes: [exit-codes.md](exit-codes.md).

`aetherflow --version` prints the version; `aetherflow --install-completion` installs shell
completion (run ids are suggested from the known stores).
"""


def help_text(args: list[str]) -> str:
    from typer.testing import CliRunner

    from aetherflow.cli.app import app

    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100", "TERM": "dumb"}, prog_name="aetherflow")
    return res.stdout.rstrip() + "\n"


def render() -> str:
    parts = [HEADER]
    for cmd, summary in COMMANDS:
        parts.append(f"\n## aetherflow {cmd}\n\n{summary}\n\n```text\n{help_text(cmd.split())}```\n")
    return "".join(parts)


if __name__ == "__main__":
    target = Path(__file__).with_name("cli.md")
    target.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
