"""docs/operations.md is executed with its config file (tests/contract/test_doc_examples.py runs
its blocks without one): the config with the machine's paths moved into a temporary directory,
the webhook to a local receiver and the pager to a script that records what it got; its crontab
lines run as cron would run them under that config; its commands; the event JSON it shows; the
metric names its Prometheus alert rules use; the config error it shows."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
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


REPO_FLOWS = DOC.parents[1] / "flows"
CLI = str(Path(sys.executable).parent / "aetherflow")


@pytest.fixture
def host(tmp_path: Path, home: Path):
    """The doc's machine, inside tmp_path: /srv/aetherflow, /etc/aetherflow, the node exporter's
    textfile directory, the pager command; returns (env, paths, receiver)."""
    srv, etc, textfile = tmp_path / "srv" / "aetherflow", tmp_path / "etc" / "aetherflow", tmp_path / "textfile"
    pages = tmp_path / "pages.jsonl"
    pager = tmp_path / "page-oncall"
    pager.write_text(f"#!/bin/sh\ncat >> {shlex.quote(str(pages))}\necho >> {shlex.quote(str(pages))}\n")
    pager.chmod(0o755)
    for d in (srv / "plugins", etc, textfile):
        d.mkdir(parents=True)
    shutil.copytree(REPO_FLOWS, tmp_path / "srv" / "flows")  # the crontab's /srv/flows
    shutil.copytree(REPO_FLOWS, tmp_path / "work" / "flows")  # the commands' flows/
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
        yield env, {"srv": srv, "textfile": textfile / "aetherflow.prom", "pages": pages, "etc": etc,
                    "work": tmp_path / "work"}, inbox


def shell(line: str, env: dict[str, str], srv: Path) -> subprocess.CompletedProcess[str]:
    line = (line.replace("/srv/aetherflow", str(srv)).replace("/srv/flows", str(srv.parent / "flows"))
            .replace("/opt/aetherflow/.venv/bin/aetherflow", CLI))
    return subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True, timeout=120,
                          cwd=srv.parent.parent / "work")


def test_the_cron_setup_runs(host) -> None:
    env, paths, inbox = host
    srv = paths["srv"]
    lines = [line for line in fences("crontab")[0].splitlines() if line.strip() and not line.startswith("#")]
    commands = [line.split(None, 5)[5] for line in lines if "=" not in line.split()[0]]
    assert len(commands) == 4
    for command in commands:
        res = shell(command, env, srv)
        assert res.returncode == 0, (command, res.stderr)
        assert res.stdout == "" and res.stderr == "", (command, res.stdout, res.stderr)  # cron mails nothing on a good day
    listed = json.loads(shell("aetherflow runs list --json", env, srv).stdout)["runs"]
    assert sorted(r["flow_id"] for r in listed) == ["daily_sales", "etl_sqlite"]
    assert {r["store"] for r in listed} == {str(srv / "state.db")}  # the config's state
    metrics = {f.name: f for f in text_string_to_metric_families(paths["textfile"].read_text())}
    ok = [s for s in metrics["aetherflow_last_run_status"].samples if s.value == 1]
    assert sorted((s.labels["flow"], s.labels["status"]) for s in ok) == [("daily_sales", "SUCCESS"), ("etl_sqlite", "SUCCESS")]
    assert inbox.requests == []  # nothing failed: nothing to say
    assert len((srv / "events.jsonl").read_text().splitlines()) > 10  # the config's events_log


def test_failures_reach_the_webhook_and_the_pager(host) -> None:
    env, paths, inbox = host
    srv = paths["srv"]
    [flow] = [f for f in fences("yaml") if "version: 1" in f]
    broken = srv.parent / "flows" / "billing_daily.yaml"
    broken.write_text(flow.replace("orders_sync", "billing_daily").replace('[echo, "orders loaded"]', "[sh, -c, 'exit 3']"))
    res = shell("aetherflow run /srv/flows/billing_daily.yaml --timeout 3600", env, srv)
    assert res.returncode == 1
    [posted] = [json.loads(r.body) for r in inbox.requests]
    paged = json.loads(paths["pages"].read_text().splitlines()[0])
    for doc in (posted, paged):
        assert (doc["event"], doc["flow_id"], doc["failed_job"], doc["failed_step"]) == ("failed", "billing_daily", "push", "load")
    # the JSON the doc shows has exactly the keys sent
    [example] = fences("json")
    assert sorted(json.loads(example)) == sorted(posted)
    other = srv.parent / "flows" / "orders_sync.yaml"
    other.write_text(broken.read_text().replace("billing_daily", "orders_sync"))
    assert shell("aetherflow run /srv/flows/orders_sync.yaml", env, srv).returncode == 1
    assert len(inbox.requests) == 2 and len(paths["pages"].read_text().split("\n\n")) == 2  # not paged: not billing_*


def test_the_commands_run(host) -> None:
    env, paths, _ = host
    srv = paths["srv"]
    commands = [line for block in fences("sh") for line in block.splitlines() if line.startswith("aetherflow ")]
    assert len(commands) >= 10
    for command in commands:
        res = shell(command, env, srv)
        assert res.returncode == 0, (command, res.stderr)
        assert res.stdout or command.startswith("aetherflow run "), command
    shown = json.loads(shell("aetherflow config show --json", env, srv).stdout)["values"]
    assert shown["on_locked"]["value"] == "skip" and shown["retention.max_age"]["value"] == "30d"
    assert all(n["value"].startswith(("webhook http://127.0.0.1:", "command ")) for n in shown["notify"]["value"])
    assert "secret-path" not in json.dumps(shown)
    logs = shell("aetherflow runs logs last report.summarize --attempt 1", env, srv).stdout
    assert logs.splitlines() == ["==> report.summarize attempt 1 stdout <==", "3"]


def test_the_alert_rules_name_real_metrics(host) -> None:
    env, paths, _ = host
    srv = paths["srv"]
    assert shell("aetherflow run /srv/flows/daily.yaml", env, srv).returncode == 0
    families = {f.name: f for f in text_string_to_metric_families(paths["textfile"].read_text())}
    [rules_text] = [f for f in fences("text") if "groups:" in f]
    rules = yaml.safe_load(rules_text)["groups"][0]["rules"]
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
    [shown] = [f for f in fences("text") if "config.additional_property" in f]
    cfg = tmp_path / "config.toml"
    cfg.write_text('state = "/srv/aetherflow/state.db"\nevents_log = "e.jsonl"\nplugin_paths = []\non_locked = "skip"\n'
                   'log_fromat = "json"\n')
    res = subprocess.run([sys.executable, "-m", "aetherflow", "config", "show", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert shown.replace("/etc/aetherflow/config.toml", str(cfg)) in res.stderr
