"""The typer application: the root group and which module registers each command (the shared
helpers, error → exit code, logging and signals, are in ``cli/support.py``).

Commands live in one module per group and register themselves on ``root_app`` when imported.
An invocation imports only the module of the command it names (``COMMAND_MODULES``), so typer
builds and introspects just those commands; the root group itself (no command, a leading option
such as ``--help``, an unknown command, shell completion) gets all of them. ``app`` is the root
with every command registered, for callers that render or invoke any command (docs, tests).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import typer

from aetherflow import __version__

root_app = typer.Typer(
    name="aetherflow",
    help="YAML-defined flow runner for operations and ETL batch work: validate, run, resume.\n\n"
    "Example: aetherflow run flows/daily.yaml",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"aetherflow {__version__}\n")
        raise typer.Exit(0)


@root_app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """YAML-defined flow runner: validate, run and resume flows of jobs and steps.

    Example: aetherflow run flows/daily.yaml
    """


# top-level command name → the module that registers it on `root_app` (a test checks the map
# against the full command list). Modules appear in import order, which is the order of the
# commands in `aetherflow --help`.
COMMAND_MODULES = MappingProxyType({
    "validate": "aetherflow.cli.inspect",
    "schema": "aetherflow.cli.inspect",
    "graph": "aetherflow.cli.inspect",
    "steps": "aetherflow.cli.inspect",
    "explain": "aetherflow.cli.inspect",
    "doctor": "aetherflow.cli.inspect",
    "run": "aetherflow.cli.runcmd",
    "resume": "aetherflow.cli.runcmd",
    "runs": "aetherflow.cli.runs",
    "locks": "aetherflow.cli.runs",
    "cancel": "aetherflow.cli.runs",
    "status": "aetherflow.cli.ops",
    "config": "aetherflow.cli.ops",
    "store": "aetherflow.cli.store",
})


def import_command_module(path: str) -> None:
    # the import statement's machinery, unlike importlib.import_module, shows in -X importtime
    __import__(path)


def register_all_commands() -> typer.Typer:
    """Import every command module, so that ``root_app`` has every command; returns it."""
    for path in dict.fromkeys(COMMAND_MODULES.values()):
        import_command_module(path)
    return root_app


def invoked_command(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The command ``args`` run, or None when the root group answers itself and so must know
    every command: no arguments (help), a leading option (every root option, ``--help``,
    ``--version`` and the completion installers, is eager and exits before a command is
    looked up; an unknown one is an error), or a shell-completion request."""
    if "_AETHERFLOW_COMPLETE" in env or not args or args[0].startswith("-"):
        return None
    return args[0]


def run_app(args: list[str]) -> None:
    """Register only the invoked command's module (typer then builds and introspects just
    its commands); the root group and unknown names ("No such command", suggestions) get all."""
    module = COMMAND_MODULES.get(invoked_command(args, os.environ) or "")
    if module is None:
        register_all_commands()
    else:
        import_command_module(module)
    root_app(args=args, prog_name="aetherflow")


if TYPE_CHECKING:
    app: typer.Typer  # the root with every command registered
else:

    def __getattr__(name: str) -> Any:
        # `from aetherflow.cli.app import app` (docs/gen_cli.py, tests) gets every command;
        # resolved on access so that importing this module alone registers none
        if name == "app":
            return register_all_commands()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
