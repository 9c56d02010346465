"""docs/operations.md is executed: its config file (with the machine's paths moved into a
temporary directory, the webhook to a local receiver, the pager to a script that records what
it got), its crontab lines run as cron would run them, its flow, its commands, the event JSON
it shows, and the metric names its Prometheus alert rules use."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from servers import http_receiver

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def fences(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def host(tmp_path: Path, home: Path):
    """The doc's machine, inside tmp_path: /srv/aetherflow, /etc/aetherflow, the node exporter's
    textfile directory, the pager command; returns (env, paths, receiver)."""
    srv, etc, textfile = tmp_path / "srv" / "aetherflow", tmp_path / "etc" / "aetherflow", tmp_path / "textfile"
    pages = tmp_path / "pages.jsonl"
    pager = tmp_path / "page-oncall"
    pager.write_text(f"#!/bin/sh\ncat >> {shlex.quote(str(pages))}\necho >> {shlex.quote(str(pages))}\n")
    pager.chmod(0o755)
    for d in (srv / "flows", srv / "plugins", etc, textfile):
        d.mkdir(parents=True)
    with http_receiver() as inbox:
        [config] = fences("toml")
        config = (config.replace("/srv/aetherflow", str(srv))
                  .replace("/var/lib/node_exporter/textfile", str(textfile))
                  .replace("https://hooks.example.com/services/ops", inbox.url)
                  .replace("/usr/local/bin/page-oncall", str(pager)))
        (etc / "config.toml").write_text(config, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERFLOW_")}
        env.update(AETHERFLOW_CONFIG=str(etc / "config.toml"), AETHERFLOW_HOME=str(home),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        yield env, {"srv": srv, "textfile": textfile / "aetherflow.prom", "pages": pages, "etc": etc}, inbox


def shell(line: str, env: dict[str, str], srv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", line.replace("/srv/aetherflow", str(srv))], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_cron_setup_runs(host) -> None:
    env, paths, inbox = host
    srv = paths["srv"]
    [flow] = [f for f in fences("yaml") if "version: 1" in f]
    lines = [line for line in fences("crontab")[0].splitlines() if line.strip() and not line.startswith("#")]
    commands = [line.split(None, 5)[5] for line in lines if "=" not in line.split()[0]]
    # each flow the crontab names is the doc's flow under its own id
    for name in re.findall(r"/srv/aetherflow/flows/(\w+)\.yaml", "\n".join(commands)):
        (srv / "flows" / f"{name}.yaml").write_text(flow.replace("orders_sync", name), encoding="utf-8")
    for command in commands:
        res = shell(command, env, srv)
        assert res.returncode == 0, (command, res.stderr)
        assert res.stdout == "" or command.endswith("prune --yes"), (command, res.stdout)
        assert res.stderr == "", (command, res.stderr)  # cron mails nothing on a good day
    listed = json.loads(shell("aetherflow runs list --json", env, srv).stdout)["runs"]
    assert sorted(r["flow_id"] for r in listed) == ["billing_daily", "inventory_hourly", "orders_sync"]
    assert {r["store"] for r in listed} == {str(srv / "state.db")}  # the config's state
    metrics = {f.name: f for f in text_string_to_metric_families(paths["textfile"].read_text())}
    ok = [s for s in metrics["aetherflow_last_run_status"].samples if s.value == 1]
    assert sorted((s.labels["flow"], s.labels["status"]) for s in ok) == [
        ("billing_daily", "SUCCESS"), ("inventory_hourly", "SUCCESS"), ("orders_sync", "SUCCESS")]
    assert inbox.requests == []  # nothing failed: nothing to say
    assert len((srv / "events.jsonl").read_text().splitlines()) > 10  # the config's events_log


def test_failures_reach_the_webhook_and_the_pager(host) -> None:
    env, paths, inbox = host
    srv = paths["srv"]
    broken = srv / "flows" / "billing_daily.yaml"
    broken.write_text("version: 1\nflow: {id: billing_daily}\njobs:\n  - id: load\n    steps:\n"
                      "      - {id: copy, type: external.process, inputs: {command: [sh, -c, 'exit 3']}}\n")
    res = shell("aetherflow run /srv/aetherflow/flows/billing_daily.yaml --timeout 3600", env, srv)
    assert res.returncode == 1
    [posted] = [json.loads(r.body) for r in inbox.requests]
    paged = json.loads(paths["pages"].read_text().splitlines()[0])
    for doc in (posted, paged):
        assert (doc["event"], doc["flow_id"], doc["failed_job"], doc["failed_step"]) == ("failed", "billing_daily", "load", "copy")
    # the JSON the doc shows has exactly the keys sent
    [example] = fences("json")
    assert sorted(json.loads(example)) == sorted(posted)
    other = srv / "flows" / "orders_sync.yaml"
    other.write_text(broken.read_text().replace("billing_daily", "orders_sync"))
    assert shell("aetherflow run /srv/aetherflow/flows/orders_sync.yaml", env, srv).returncode == 1
    assert len(inbox.requests) == 2 and len(paths["pages"].read_text().split("\n\n")) == 2  # not paged: not billing_*


def test_the_commands_run(host) -> None:
    env, paths, _ = host
    srv = paths["srv"]
    [flow] = [f for f in fences("yaml") if "version: 1" in f]
    for name in ("orders_sync", "billing_daily"):
        (srv / "flows" / f"{name}.yaml").write_text(flow.replace("orders_sync", name), encoding="utf-8")
        assert shell(f"aetherflow run /srv/aetherflow/flows/{name}.yaml", env, srv).returncode == 0
    commands = [line for block in fences("sh") for line in block.splitlines() if line.startswith("aetherflow ")]
    assert len(commands) >= 8
    for command in commands:
        res = shell(command, env, srv)
        assert res.returncode == 0, (command, res.stderr)
        assert res.stdout, command
    shown = json.loads(shell("aetherflow config show --json", env, srv).stdout)["values"]
    assert shown["on_locked"]["value"] == "skip" and shown["retention.max_age"]["value"] == "30d"
    assert "hooks" not in json.dumps(shown["notify"]) or "/***" in json.dumps(shown["notify"])
    logs = shell("aetherflow runs logs last --flow orders_sync", env, srv).stdout
    assert "orders fetched" in logs and "orders loaded" in logs


def test_the_alert_rules_name_real_metrics(host) -> None:
    env, paths, _ = host
    srv = paths["srv"]
    [flow] = [f for f in fences("yaml") if "version: 1" in f]
    (srv / "flows" / "billing_daily.yaml").write_text(flow.replace("orders_sync", "billing_daily"))
    assert shell("aetherflow run /srv/aetherflow/flows/billing_daily.yaml", env, srv).returncode == 0
    families = {f.name: f for f in text_string_to_metric_families(paths["textfile"].read_text())}
    rules = yaml.safe_load(next(f for f in fences("yaml") if "groups:" in f))["groups"][0]["rules"]
    assert len(rules) == 4
    for rule in rules:
        for name in re.findall(r"aetherflow_[a-z_]+", rule["expr"]):
            assert name in families, (rule["alert"], name)
        for status in re.findall(r'status=~"([^"]+)"', rule["expr"]):
            known = {s.labels["status"] for s in families["aetherflow_last_run_status"].samples}
            assert set(status.split("|")) <= known
    documented = set(re.findall(r"`(aetherflow_[a-z_]+)", DOC.read_text()))
    assert documented == set(families)


def test_the_config_error_shown_is_the_one_printed(tmp_path: Path, home: Path) -> None:
    [shown] = fences("text")
    cfg = tmp_path / "config.toml"
    cfg.write_text('state = "/srv/aetherflow/state.db"\nevents_log = "e.jsonl"\nplugin_paths = []\non_locked = "skip"\n'
                   'log_fromat = "json"\n')
    res = subprocess.run([sys.executable, "-m", "aetherflow", "config", "show", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert shown.replace("/etc/aetherflow/config.toml", str(cfg)) in res.stderr
