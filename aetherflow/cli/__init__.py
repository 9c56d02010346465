"""Command-line interface: the composition root. Only this package touches the process
(environment, argv, signals, streams, exit codes). ``--version`` is answered before typer loads,
and so are the plain forms of ``run``, ``resume`` and ``validate`` (``cli/fast.py``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"] or args == ["-V"]:
        from aetherflow import __version__

        sys.stdout.write(f"aetherflow {__version__}\n")
        sys.exit(0)
    if args and args[0] in ("run", "resume", "validate"):
        import os

        from aetherflow.cli import fast

        fast.run(args, os.environ)  # exits, unless typer must parse these arguments
    from aetherflow.cli.app import run_app

    run_app(args)
