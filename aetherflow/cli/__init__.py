"""Command-line interface: the composition root. Only this package touches the process
(environment, argv, signals, streams, exit codes). ``--version`` is answered before typer loads;
every other command goes through the typer application (``cli/app.py``)."""

from __future__ import annotations

import gc
import sys

#: collect the youngest objects every 10,000 net allocations instead of CPython's 700: a
#: command allocates its modules, its flow and its records once and frees most of what it
#: makes per step by reference counting, so the default made some forty collections of a
#: one-step run that found almost nothing (docs/performance.md)
GC_THRESHOLD = (10_000, 10, 10)


def entry() -> None:
    """The process entry point (the ``aetherflow`` script, ``python -m aetherflow``): ``main``
    with the garbage collector set for a short-lived command. When the command is done,
    ``gc.freeze()`` spares the interpreter's exit a final collection over every object of every
    loaded module (about a tenth of a short command): the process ends, the memory goes back
    to the system anyway. Exit codes and the interpreter's own exit (atexit handlers, flushed
    streams) are unchanged. ``main`` itself leaves the collector alone, for callers that embed it."""
    gc.set_threshold(*GC_THRESHOLD)
    try:
        main()
    finally:
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"] or args == ["-V"]:
        from aetherflow import __version__

        sys.stdout.write(f"aetherflow {__version__}\n")
        sys.exit(0)
    from aetherflow.cli.app import run_app

    run_app(args)
