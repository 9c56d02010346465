"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

# The environment variables and the config file are read by settings.py, not by typer, so that
# `aetherflow config show` can tell which of them set a value (flags > environment > file).
State = Annotated[
    str | None,
    typer.Option("--state", help="State store: a database path or a postgresql:// URL (also AETHERFLOW_STATE, "
                 "config state; default: see docs/state.md).", metavar="PATH"),
]
StateUnused = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="State store (also AETHERFLOW_STATE): accepted for uniformity with the other commands; "
        "this command does not use the state store.",
        metavar="PATH",
    ),
]
Config = Annotated[
    str | None,
    typer.Option("--config", help="Config file (also AETHERFLOW_CONFIG; default: the first of "
                 "$AETHERFLOW_HOME/config.toml, ~/.config/aetherflow/config.toml, /etc/aetherflow/config.toml).",
                 metavar="FILE"),
]
LogFile = Annotated[
    str | None,
    typer.Option("--log-file", help="Also append aetherflow's own log lines (with times) to FILE.", metavar="FILE"),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Flow = Annotated[str | None, typer.Argument(help="Flow YAML file (or --flow-yaml FILE).", show_default=False)]
FlowYaml = Annotated[
    str | None, typer.Option("--flow-yaml", help="Alias of the FLOW argument (aetherflow-core).", metavar="FILE")
]
PluginPath = Annotated[
    list[str] | None,
    typer.Option("--plugin-path", help="Extra folder of plugin modules (repeatable; also AETHERFLOW_PLUGIN_PATHS, "
                 "config plugin_paths).", metavar="DIR"),
]
EventsLog = Annotated[
    str | None,
    typer.Option("--events-log", help="Append every event as a JSON line to FILE (also AETHERFLOW_EVENTS_LOG, "
                 "config events_log).", metavar="FILE"),
]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More output on stderr (-v progress, -vv debug).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
LogFormat = Annotated[
    str | None,
    typer.Option("--log-format", help="Log lines on stderr as text or json (also config log_format; "
                 "default text).", metavar="text|json"),
]
NoColor = Annotated[bool, typer.Option("--no-color", help="No colour (also NO_COLOR).")]
DetailedExit = Annotated[
    bool, typer.Option("--detailed-exitcode", help="Exit 4 when every job was skipped, 5 when the run is waiting.")
]
