"""The config file (SPEC 13): where it is found, what it may say (errors located by
file:line:column, exit 2), precedence flags > environment > file > defaults as `config show`
reports it (secrets masked), STATE_DIRECTORY, and --config / --log-file on every command."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from aetherflow.config import candidates, load_config

FLOW = """
version: 1
flow: {id: cfg}
jobs:
  - id: a
    steps:
      - {id: s, type: noop}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def shown(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    res = cli("config", "show", "--json", *args, env=env)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


# search order -----------------------------------------------------------------------------------


def test_search_order_first_found_wins(tmp_path: Path, home: Path) -> None:
    env = {"AETHERFLOW_HOME": str(home), "HOME": str(tmp_path / "user")}
    system = tmp_path / "etc" / "aetherflow" / "config.toml"
    user = tmp_path / "user" / ".config" / "aetherflow" / "config.toml"
    at_home = home / "config.toml"
    assert [p for _, p in candidates(env, system_file=system)] == [at_home, user, system]
    assert load_config(env, system_file=system).path is None
    write(system, 'log_format = "json"\n')
    assert load_config(env, system_file=system).path == str(system)
    write(user, 'log_format = "json"\n')
    assert load_config(env, system_file=system).path == str(user)
    xdg = tmp_path / "xdg"
    write(xdg / "aetherflow" / "config.toml", 'log_format = "json"\n')
    assert load_config({**env, "XDG_CONFIG_HOME": str(xdg)}, system_file=system).path == str(xdg / "aetherflow" / "config.toml")
    write(at_home, 'log_format = "text"\n')
    found = load_config(env, system_file=system)
    assert (found.path, found.found_by) == (str(at_home), "$AETHERFLOW_HOME/config.toml")
    named = write(tmp_path / "named.toml", 'log_format = "json"\n')
    assert load_config({**env, "AETHERFLOW_CONFIG": str(named)}, system_file=system).found_by == "AETHERFLOW_CONFIG"
    flag = write(tmp_path / "flag.toml", "")
    assert load_config({**env, "AETHERFLOW_CONFIG": str(named)}, str(flag), system_file=system).path == str(flag)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_named_config_file_must_exist(cli, tmp_path: Path, how: str) -> None:
    missing = str(tmp_path / "nope.toml")
    args, env = (["--config", missing], None) if how == "flag" else ([], {"AETHERFLOW_CONFIG": missing})
    res = cli("runs", "list", *args, env=env)
    assert res.exit_code == 2
    assert f"config file {missing}" in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr


# bad files: located, exit 2 -------------------------------------------------------------------


def test_unknown_keys_and_wrong_types_are_located(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", """
        state = "s.db"
        log_fromat = "json"

        [metrics]
        textfile = 42

        [[notify]]
        on = ["failed", "exploded"]
        webhook = "https://hooks.example.com/x"
        colour = "red"
        """)
    res = cli("runs", "list", "--config", str(cfg))
    assert res.exit_code == 2, res.stderr
    err = res.stderr
    assert f"{cfg}:2:1: config.additional_property: unknown key 'log_fromat'" in err
    assert "did you mean 'log_format'?" in err
    assert f"{cfg}:5:12: config.type: expected string, got integer" in err
    assert f"{cfg}:8:17: config.enum: 'exploded' is not one of" in err
    assert f"{cfg}:10:1: config.additional_property: unknown key 'colour'" in err
    assert "Traceback" not in err and res.stdout == ""


def test_a_bad_toml_line_is_located(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", """
        state = "s.db"
        on_locked = wait
        """)
    res = cli("run", "whatever.yaml", "--config", str(cfg))
    assert res.exit_code == 2
    assert f"{cfg}:2:13: config.syntax: TOML: Invalid value" in res.stderr, res.stderr


def test_bad_values_the_schema_cannot_see(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", """
        on_locked = "wait=soon"

        [retention]
        max_age = "30"
        """)
    res = cli("runs", "list", "--config", str(cfg))
    assert res.exit_code == 2
    assert f"{cfg}:1:13: config.on_locked:" in res.stderr, res.stderr
    assert f"{cfg}:4:11: config.duration: max_age '30' is not a duration with a unit" in res.stderr


def test_every_notifier_has_exactly_one_target(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", """
        [[notify]]
        on = ["failed"]
        webhook = "https://hooks.example.com/x"
        command = ["true"]
        """)
    res = cli("runs", "list", "--config", str(cfg))
    assert res.exit_code == 2
    assert f"{cfg}:1:3: config.one_of:" in res.stderr, res.stderr


# precedence and sources --------------------------------------------------------------------------


def test_precedence_flags_then_environment_then_file_then_defaults(cli, tmp_path: Path, home: Path) -> None:
    cfg = write(home / "config.toml", """
        state = "from-file.db"
        events_log = "/var/log/af-events.jsonl"
        plugin_paths = ["plugins"]
        log_format = "json"
        on_locked = "wait=10m"

        [metrics]
        textfile = "/var/lib/node_exporter/aetherflow.prom"

        [retention]
        max_age = "30d"
        """)
    doc = shown(cli)
    assert (doc["config_file"], doc["found_by"]) == (str(cfg), "$AETHERFLOW_HOME/config.toml")
    v = doc["values"]
    assert v["state"] == {"value": str(home / "from-file.db"), "source": f"file {cfg}:1:1"}
    assert v["log_format"] == {"value": "json", "source": f"file {cfg}:4:1"}
    assert v["on_locked"] == {"value": "wait=600", "source": f"file {cfg}:5:1"}
    assert v["metrics.textfile"]["source"] == f"file {cfg}:8:1"
    assert v["retention.max_age"] == {"value": "30d", "source": f"file {cfg}:11:1"}
    assert v["plugin_paths"]["value"] == [{"value": str(home / "plugins"), "source": f"file {cfg}:3:1"}]
    assert v["home"] == {"value": str(home), "source": "env AETHERFLOW_HOME"}
    assert v["inline_wait_max"] == {"value": 60.0, "source": "default"}
    env = {"AETHERFLOW_STATE": str(tmp_path / "env.db"), "AETHERFLOW_ON_LOCKED": "fail",
           "AETHERFLOW_PLUGIN_PATHS": str(tmp_path / "envplugins")}
    v = shown(cli, env=env)["values"]
    assert v["state"] == {"value": str(tmp_path / "env.db"), "source": "env AETHERFLOW_STATE"}
    assert v["on_locked"] == {"value": "fail", "source": "env AETHERFLOW_ON_LOCKED"}
    assert v["log_format"] == {"value": "json", "source": f"file {cfg}:4:1"}
    assert [p["source"] for p in v["plugin_paths"]["value"]] == ["env AETHERFLOW_PLUGIN_PATHS", f"file {cfg}:3:1"]
    v = shown(cli, "--state", str(tmp_path / "flag.db"), "--plugin-path", "flagplugins", env=env)["values"]
    assert v["state"] == {"value": str(tmp_path / "flag.db"), "source": "flag --state"}
    assert [p["source"] for p in v["plugin_paths"]["value"]] == [
        "flag --plugin-path", "env AETHERFLOW_PLUGIN_PATHS", f"file {cfg}:3:1"]


def test_the_file_settings_are_used(cli, write_flow, tmp_path: Path, home: Path) -> None:
    """The file's state is where runs are recorded and its log_format is used by run."""
    write(home / "config.toml", 'state = "elsewhere/runs.db"\nlog_format = "json"\n')
    bad = write_flow("version: 1\nflow: {id: x}\njobs: []\n", name="bad.yaml")
    res = cli("run", str(bad))
    assert res.exit_code == 2
    assert all(json.loads(line)["level"] == "error" for line in res.stderr.splitlines()), res.stderr
    res = cli("run", str(write_flow(FLOW)), "--log-format", "text")
    assert res.exit_code == 0, res.stderr
    assert (home / "elsewhere" / "runs.db").is_file()
    listed = cli("runs", "list", "--json")
    assert [r["store"] for r in json.loads(listed.stdout)["runs"]] == [str(home / "elsewhere" / "runs.db")]


def test_config_show_masks_secrets(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", """
        state = "postgresql://flows:hunter2@db.example.com:5432/flows"

        [[notify]]
        on = ["failed"]
        webhook = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"

        [[notify]]
        on = ["crashed"]
        flows = ["daily_*"]
        email = {to = ["ops@example.com"], host = "smtp.example.com", username = "robot", password = "m4ilpw"}
        """)
    for args in ([], ["--json"]):
        res = cli("config", "show", "--config", str(cfg), *args)
        assert res.exit_code == 0, res.stderr
        for secret in ("hunter2", "XXXXSECRETXXXX", "T000", "m4ilpw"):
            assert secret not in res.stdout
    v = json.loads(cli("config", "show", "--config", str(cfg), "--json").stdout)["values"]
    assert v["state"]["value"] == "postgresql://flows@db.example.com:5432/flows"  # shown as every command shows a store
    assert [n["value"] for n in v["notify"]["value"]] == [
        "webhook https://hooks.slack.com/*** on failed", "email to ops@example.com on crashed for daily_*"]
    assert [n["source"] for n in v["notify"]["value"]] == [f"file {cfg}:3:3", f"file {cfg}:7:3"]


def test_state_directory_after_aetherflow_home(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    systemd = tmp_path / "var-lib-aetherflow"
    monkeypatch.delenv("AETHERFLOW_HOME")
    v = shown(cli, env={"STATE_DIRECTORY": f"{systemd}:{tmp_path / 'second'}"})["values"]
    assert v["home"] == {"value": str(systemd), "source": "env STATE_DIRECTORY"}
    v = shown(cli, env={"STATE_DIRECTORY": str(systemd), "AETHERFLOW_HOME": str(tmp_path / "h")})["values"]
    assert v["home"]["source"] == "env AETHERFLOW_HOME"


def test_config_show_text(cli, tmp_path: Path, home: Path) -> None:
    cfg = write(home / "config.toml", 'on_locked = "skip"\n')
    res = cli("config", "show")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0] == f"config file: {cfg} (from $AETHERFLOW_HOME/config.toml)"
    assert any(line.split() == ["on_locked", "skip", "(file", f"{cfg}:1:1)"] for line in lines), res.stdout


# --config and --log-file on every command ---------------------------------------------------------

EVERY_COMMAND = [
    ["run", "FLOW"], ["resume", "nope"], ["validate", "FLOW"], ["schema"], ["graph", "FLOW"], ["explain", "FLOW"],
    ["doctor", "FLOW"], ["cancel", "nope"], ["runs", "list"], ["runs", "show", "nope"], ["runs", "prune", "--older-than", "1d"],
    ["runs", "logs", "nope"], ["locks", "list"], ["steps", "list"], ["steps", "show", "noop"], ["status"], ["config", "show"],
]


@pytest.mark.parametrize("cmd", EVERY_COMMAND, ids=lambda c: " ".join(c))
def test_every_command_reads_config_and_log_file(cli, write_flow, tmp_path: Path, cmd: list[str]) -> None:
    flow = write_flow(FLOW)
    args = [str(flow) if a == "FLOW" else a for a in cmd]
    bad = write(tmp_path / "bad.toml", "colour = 1\n")
    res = cli(*args, "--config", str(bad))
    assert res.exit_code == 2 and f"{bad}:1:1: config.additional_property" in res.stderr, res.stderr
    log = tmp_path / "af.log"
    res = cli(*args, "--log-file", str(log), "--config", str(bad))
    assert f"{bad}:1:1: config.additional_property" in log.read_text(encoding="utf-8")


def test_log_file_gets_the_run_lines_whatever_the_verbosity(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: logged}
        secrets: {token: {env: LOG_TOKEN}}
        jobs:
          - id: a
            steps:
              - {id: ok, type: noop}
              - id: bad
                type: external.process
                inputs: {command: [sh, -c, 'echo "token {{ secrets.token }}" >&2; exit 4']}
        """)
    log = tmp_path / "logs" / "af.log"
    log.parent.mkdir()
    res = cli("run", str(flow), "-q", "--log-file", str(log), env={"LOG_TOKEN": "t0k3n-sekrit"})
    assert res.exit_code == 1
    text = log.read_text(encoding="utf-8")
    assert "a.ok" in text and "a.bad" in text  # progress lines, though -q
    assert "FAILED" in text and "resume with: aetherflow resume" in text
    assert "t0k3n-sekrit" not in text and "token ***" in text
    assert "t0k3n-sekrit" not in res.stderr
    assert text.splitlines()[0][:4].isdigit()  # each line starts with its time
    before = text
    cli("runs", "list", "--log-file", str(log))
    assert log.read_text(encoding="utf-8").startswith(before)  # appended


def test_an_unwritable_log_file_is_a_usage_error(cli, tmp_path: Path) -> None:
    res = cli("runs", "list", "--log-file", str(tmp_path / "no" / "such" / "dir" / "af.log"))
    assert res.exit_code == 2
    assert "--log-file" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_config_file(cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "")
    cfg.chmod(0)
    res = cli("runs", "list", "--config", str(cfg))
    assert res.exit_code == 2 and "Permission denied" in res.stderr


def test_schema_config_prints_the_config_schema(cli) -> None:
    res = cli("schema", "config")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert sorted(doc["properties"]) == ["events_log", "log_format", "metrics", "notify", "on_locked", "plugin_paths",
                                         "retention", "state"]


def test_a_flows_notify_and_the_configs_have_the_same_shape() -> None:
    """flow.notify and [[notify]] are one shape (the config adds `flows`, a flow's email `resource`)."""
    from aetherflow.spec.schema import load_schema

    flow, cfg = load_schema("flow")["$defs"], load_schema("config")["$defs"]
    assert set(cfg["notify"]["properties"]) - {"flows"} == set(flow["notify"]["properties"])
    for key in flow["notify"]["properties"]:
        assert flow["notify"]["properties"][key] == cfg["notify"]["properties"][key], key
    assert set(flow["notify_email"]["properties"]) - {"resource"} == set(cfg["notify_email"]["properties"])
