"""`run`, `resume` and `validate` arguments parsed without typer, for start-up time.

Importing typer and building a command costs 25-45 ms, a fifth of a one-step run; cron starts
``aetherflow run`` and ``aetherflow resume --due`` many times a day, and editors and CI call
``validate`` on every save or push. :func:`parse` understands the plain forms of these
commands' arguments and returns the keyword arguments of the typer command function
(``cli/runcmd.py``, ``cli/inspect.py``), which ``cli/runexec.py`` and ``cli/validate.py`` take
by name. Anything it does
not understand exactly returns ``None`` and the typer application handles the whole command
line as usual: ``--help``, ``--``, an unknown or misspelt option, a missing or odd value (one
that starts with ``-``), an extra or a missing argument, a value ``--limit`` cannot take, shell
completion.
So every error message and every help text still comes from typer.

The tables below mirror the typer declarations; ``tests/cli/test_fast_path.py`` checks that they
name the same options, kinds and environment variables as the typer commands, and that both
parse a corpus of command lines to the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# kinds: "value" (last one wins), "multi" (repeatable, a list), "flag" (True), "count", "int"
Table = Mapping[str, tuple[str, str]]

_COMMON: dict[str, tuple[str, str]] = {
    "--env-file": ("env_file", "multi"),
    "--profile": ("profile", "value"),
    "--profiles": ("profiles", "value"),
    "--key": ("key", "value"),
    "--plugin-path": ("plugin_path", "multi"),
    "--state": ("state", "value"),
    "--json": ("as_json", "flag"),
    "--quiet": ("quiet", "flag"),
    "-q": ("quiet", "flag"),
    "--verbose": ("verbose", "count"),
    "-v": ("verbose", "count"),
    "--log-format": ("log_format", "value"),
    "--no-color": ("no_color", "flag"),
    "--events-log": ("events_log", "value"),
    "--detailed-exitcode": ("detailed_exitcode", "flag"),
}

RUN_OPTIONS: Table = {
    **_COMMON,
    "--flow-yaml": ("flow_yaml", "value"),
    "--run-id": ("run_id", "value"),
    "--job": ("job", "multi"),
    "--flow-job": ("job", "multi"),
    "--with-upstream": ("with_upstream", "flag"),
    "--param": ("param", "multi"),
    "--dry-run": ("dry_run", "flag"),
}

RESUME_OPTIONS: Table = {
    **_COMMON,
    "--event": ("event", "value"),
    "--data": ("data", "value"),
    "--rerun": ("rerun", "multi"),
    "--accept-changes": ("accept_changes", "flag"),
    "--due": ("due", "flag"),
    "--flow": ("flow_id", "value"),
    "--limit": ("limit", "int"),
}

VALIDATE_OPTIONS: Table = {
    "--flow-yaml": ("flow_yaml", "value"),
    "--json": ("as_json", "flag"),
    "--plugin-path": ("plugin_path", "multi"),
    "--state": ("state", "value"),
}

#: command -> (its one positional parameter, whether it is required, its options)
COMMANDS: Mapping[str, tuple[str, bool, Table]] = {
    "run": ("flow", False, RUN_OPTIONS),
    "resume": ("run_id", False, RESUME_OPTIONS),
    "validate": ("flow", False, VALIDATE_OPTIONS),
}

#: options whose value, when not given, comes from this environment variable (if not empty)
ENVVARS: Mapping[str, str] = {"state": "AETHERFLOW_STATE", "events_log": "AETHERFLOW_EVENTS_LOG"}

_DEFAULTS = {"value": None, "multi": None, "flag": False, "count": 0, "int": None}


def parse(args: Sequence[str], env: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """``(command, keyword arguments)`` for ``args`` (the command name first), or ``None``: let
    typer handle this command line."""
    if not args or args[0] not in COMMANDS or "_AETHERFLOW_COMPLETE" in env:
        return None
    positional, required, table = COMMANDS[args[0]]
    params: dict[str, Any] = {positional: None}
    for dest, kind in table.values():
        params[dest] = _DEFAULTS[kind]
    if "--log-format" in table:
        params["log_format"] = "text"
    rest = list(args[1:])
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if arg == "-" or params[positional] is not None:
                return None  # an extra argument: typer's error message
            params[positional] = arg
            continue
        if arg.startswith("--"):
            name, eq, inline = arg.partition("=")
            spec = table.get(name)
            if spec is None:
                return None  # --help, --, unknown or misspelt: typer answers
            dest, kind = spec
            if kind in ("flag", "count"):
                if eq:
                    return None
                _switch(params, dest, kind)
                continue
            if eq:
                value = inline
            else:
                if i >= len(rest) or rest[i].startswith("-"):
                    return None
                value = rest[i]
                i += 1
            if not _store(params, dest, kind, value):
                return None
            continue
        # short options: -v, -q, and runs of them (-vv, -qv)
        for ch in arg[1:]:
            spec = table.get("-" + ch)
            if spec is None or spec[1] not in ("flag", "count"):
                return None
            _switch(params, *spec)
    if required and params[positional] is None:
        return None  # typer's "Missing argument"
    for dest, var in ENVVARS.items():
        if dest in params and params[dest] is None and env.get(var):
            params[dest] = env[var]
    return args[0], params


def _switch(params: dict[str, Any], dest: str, kind: str) -> None:
    params[dest] = params[dest] + 1 if kind == "count" else True


def _store(params: dict[str, Any], dest: str, kind: str, value: str) -> bool:
    if kind == "multi":
        params[dest] = [*(params[dest] or ()), value]
    elif kind == "int":
        try:
            params[dest] = int(value)
        except ValueError:
            return False
    else:
        params[dest] = value
    return True


def run(args: Sequence[str], env: Mapping[str, str]) -> bool:
    """Run ``args`` when :func:`parse` understands them (ends with ``SystemExit``); else False."""
    parsed = parse(args, env)
    if parsed is None:
        return False
    command, params = parsed
    if command == "validate":
        from aetherflow.cli.validate import validate_command

        validate_command(**params)
    else:
        from aetherflow.cli import runexec

        (runexec.run_command if command == "run" else runexec.resume_command)(**params)
    raise SystemExit(0)
