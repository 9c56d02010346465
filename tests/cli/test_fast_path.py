"""`run`, `resume` and `validate` parsed without typer (cli/fast.py): the same options, kinds and
environment variables as the typer commands, the same values for every command line it accepts,
and typer for everything else (help, errors). Real subprocesses for what a process imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import probe_main

from aetherflow.cli import fast

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


def click_command(name: str) -> Any:
    import typer.main

    from aetherflow.cli.app import app

    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def kind_of(param: Any) -> str:
    if getattr(param, "count", False):
        return "count"
    if getattr(param, "is_flag", False):
        return "flag"
    if getattr(param, "multiple", False):
        return "multi"
    if type(param.type).__name__ == "IntParamType":
        return "int"
    return "value"


@pytest.mark.parametrize("command", sorted(fast.COMMANDS))
def test_tables_match_the_typer_commands(command: str) -> None:
    positional, required, table = fast.COMMANDS[command]
    expected: dict[str, tuple[str, str]] = {}
    arguments = []
    envvars = {}
    for p in click_command(command).params:
        if p.param_type_name == "argument":
            arguments.append(p.name)
            continue
        for opt in (*p.opts, *p.secondary_opts):
            if opt not in ("-h", "--help"):
                expected[opt] = (p.name, kind_of(p))
        if p.envvar:
            envvars[p.name] = p.envvar
    assert arguments == [positional]
    assert [p.required for p in click_command(command).params if p.param_type_name == "argument"] == [required]
    assert dict(table) == expected
    dests = {dest for dest, _ in table.values()}
    assert {k: v for k, v in fast.ENVVARS.items() if k in dests} == envvars


ACCEPTED = [
    ["run", "f.yaml"],
    ["run", "--flow-yaml", "f.yaml", "--run-id", "r1"],
    ["run", "f.yaml", "--job", "a", "--flow-job", "b", "--with-upstream"],
    ["run", "--param", "date=2026-11-20", "f.yaml", "--param=x=1", "--key", "K"],
    ["run", "f.yaml", "-vv", "-q", "--verbose", "--json", "--log-format", "json", "--no-color"],
    ["run", "f.yaml", "--state", "s.db", "--events-log", "ev.jsonl", "--detailed-exitcode", "--dry-run"],
    ["run", "f.yaml", "--profile", "prod", "--profiles", "p.yaml", "--env-file", "a.env", "--env-file", "b.env"],
    ["run", "f.yaml", "--plugin-path", "p1", "--plugin-path=p2", "--run-id", "a", "--run-id", "b"],
    ["run", "f.yaml", "-qv"],
    ["run"],
    ["resume", "r1"],
    ["resume", "r1", "--event", "approved", "--data", '{"by": "ops"}'],
    ["resume", "--due", "--flow", "f", "--limit", "3", "-v"],
    ["resume", "--limit=7", "--due"],
    ["resume", "r1", "--rerun", "j.s", "--rerun", "j.t", "--accept-changes", "--state", "x.db"],
    ["resume", "--key", "K", "--event", "go", "--json", "--detailed-exitcode", "--no-color"],
    ["resume", "r1", "--env-file", "e", "--profile", "p", "--profiles", "pf", "--plugin-path", "d",
     "--log-format", "text", "--events-log", "log"],
    ["validate", "f.yaml"],
    ["validate", "--json", "f.yaml", "--plugin-path", "p", "--state", "s.db"],
    ["validate", "--flow-yaml", "f.yaml"],
    ["validate"],
]


def normal(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) if v not in (None, (), []) else None
            for k, v in params.items()}


@pytest.mark.parametrize("env", [{}, {"AETHERFLOW_STATE": "env.db", "AETHERFLOW_EVENTS_LOG": "env.jsonl"},
                                 {"AETHERFLOW_STATE": ""}])
@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_same_values_as_typer(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AETHERFLOW_STATE", "AETHERFLOW_EVENTS_LOG"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    parsed = fast.parse(argv, env)
    assert parsed is not None and parsed[0] == argv[0]
    ctx = click_command(argv[0]).make_context(argv[0], list(argv[1:]))
    assert normal(parsed[1]) == normal(dict(ctx.params))


REFUSED = [
    ["run", "--help"], ["run", "-h"], ["resume", "--help"],
    ["run", "a.yaml", "b.yaml"], ["run", "--bogus", "f.yaml"], ["run", "f.yaml", "--job"],
    ["run", "f.yaml", "--run-id", "--json"], ["run", "-x", "f.yaml"], ["run", "--", "f.yaml"],
    ["run", "f.yaml", "--json=1"], ["run", "-"], ["resume", "--limit", "abc", "--due"],
    ["resume", "--limit", "-1", "--due"], ["run", "f.yaml", "--dry"], ["validate", "-q", "f.yaml"],
    ["validate", "--help"], ["steps", "list"], [],
]


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: " ".join(a) or "nothing")
def test_everything_else_goes_to_typer(argv: list[str]) -> None:
    assert fast.parse(argv, {}) is None


def test_shell_completion_goes_to_typer() -> None:
    assert fast.parse(["run", "f.yaml"], {"_AETHERFLOW_COMPLETE": "bash_complete"}) is None


def probe(*args: str) -> tuple[int, bool, str]:
    """The exit code of one CLI process, whether it imported typer, and its stderr."""
    code, modules, _, err = probe_main(*args)
    return code, "typer" in modules, err


def test_a_plain_run_and_its_resume_do_not_import_typer(home: Path, write_flow) -> None:
    flow = write_flow(ONE_STEP)
    code, typer_loaded, err = probe("run", str(flow), "--run-id", "fast-1", "-q")
    assert (code, typer_loaded) == (0, False), err
    code, typer_loaded, err = probe("resume", "fast-1")
    assert (code, typer_loaded) == (0, False), err
    assert "already" in err.lower() or err == ""


def test_errors_of_the_fast_path_keep_their_exit_codes(home: Path, tmp_path: Path) -> None:
    code, typer_loaded, err = probe("run", str(tmp_path / "missing.yaml"))
    assert (code, typer_loaded) == (2, False)
    assert "missing.yaml" in err and "Traceback" not in err
    code, typer_loaded, err = probe("resume", "no-such-run")
    assert (code, typer_loaded) == (2, False)
    assert "no-such-run" in err


def test_a_usage_error_is_typers(home: Path, write_flow) -> None:
    flow = write_flow(ONE_STEP)
    code, typer_loaded, err = probe("run", str(flow), "--bogus")
    assert (code, typer_loaded) == (2, True)
    assert "No such option: --bogus" in err


def test_validate_without_typer_prints_the_same(home: Path, write_flow, cli) -> None:
    good = write_flow(ONE_STEP, name="good.yaml")
    bad = write_flow(ONE_STEP.replace("type: noop", "type: nope"), name="bad.yaml")
    for flow, expected in ((good, 0), (bad, 2)):
        code, modules, out, err = probe_main("validate", str(flow))
        assert (code, "typer" in modules) == (expected, False), err
        typer_res = cli("validate", str(flow))  # the typer command, in-process
        assert typer_res.exit_code == expected
        assert out.strip() == typer_res.stdout.strip()
        assert err.strip() == typer_res.stderr.strip()
