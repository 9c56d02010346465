"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

State = Annotated[
    str | None,
    typer.Option("--state", envvar="AETHERFLOW_STATE", help="State database path (default: see docs/state.md).", show_envvar=True),
]
StateUnused = Annotated[
    str | None,
    typer.Option(
        "--state",
        envvar="AETHERFLOW_STATE",
        help="State database path: accepted for uniformity with the other commands; "
        "this command does not use the state store.",
        show_envvar=True,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Flow = Annotated[str | None, typer.Argument(help="Flow YAML file (or --flow-yaml FILE).", show_default=False)]
FlowYaml = Annotated[
    str | None, typer.Option("--flow-yaml", help="Alias of the FLOW argument (aetherflow-core).", metavar="FILE")
]
PluginPath = Annotated[
    list[str] | None,
    typer.Option("--plugin-path", help="Extra folder of plugin modules (repeatable; also AETHERFLOW_PLUGIN_PATHS).", metavar="DIR"),
]
EventsLog = Annotated[
    str | None,
    typer.Option("--events-log", envvar="AETHERFLOW_EVENTS_LOG", help="Append every event as a JSON line to FILE.", metavar="FILE"),
]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More output on stderr (-v progress, -vv debug).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
LogFormat = Annotated[str, typer.Option("--log-format", help="Log lines on stderr as text or json.", metavar="text|json")]
NoColor = Annotated[bool, typer.Option("--no-color", help="No colour (also NO_COLOR).")]
DetailedExit = Annotated[
    bool, typer.Option("--detailed-exitcode", help="Exit 4 when every job was skipped, 5 when the run is waiting.")
]
