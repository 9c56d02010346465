"""`aetherflow explain` (origins, masking) and `aetherflow doctor` (missing env), and profiles:
flow.profiles_file, --profiles, --profile override, deep merge of resource over profile."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

PASSWORD = "Hunter2-explain-pw"
TOKEN = "t0ken-explain-value"

PROFILES = """
prod:
  description: production warehouse
  config:
    host: prod-db.internal
    port: 5432
    user: etl
    password: "{{ secrets.db_password }}"
    headers: {X-Team: ops, X-Env: prod}
  options: {connect_timeout: 10}
  decode: {config: {token: true}}
dev:
  config: {host: localhost, user: dev, headers: {X-Team: dev}}
"""

FLOW = """
version: 1
flow:
  id: explained
  profiles_file: profiles.yaml
secrets:
  db_password: {env: DB_PASSWORD}
resources:
  warehouse:
    kind: db
    driver: postgres
    profile: prod
    config: {dbname: sales, port: 6543, token: "{{ env.TOKEN_B64 }}", headers: {X-Env: nightly}}
jobs:
  - id: j
    steps:
      - {id: s, type: noop}
"""


def _env() -> dict[str, str]:
    return {"DB_PASSWORD": PASSWORD, "TOKEN_B64": base64.b64encode(TOKEN.encode()).decode()}


def _values(out: str) -> dict[str, tuple[str, str]]:
    values = {}
    for line in out.splitlines():
        line = line.strip()
        if " <- " in line and " = " in line:
            key, rest = line.split(" = ", 1)
            value, origin = rest.split("  <- ", 1)
            values[key] = (value, origin)
    return values


def _no_secret(text: str) -> None:
    for secret in (PASSWORD, TOKEN):
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode().rstrip("=") not in text


def test_explain_shows_origins_and_masks_secrets(cli, write_flow) -> None:
    write_flow(PROFILES, name="profiles.yaml")
    flow = write_flow(FLOW)
    res = cli("explain", str(flow), env=_env())
    assert res.exit_code == 0, res.stderr
    v = _values(res.stdout)
    assert v["config.host"] == ("prod-db.internal", "profile prod (profiles file)")
    assert v["config.user"] == ("etl", "profile prod (profiles file)")
    assert v["config.port"] == ("6543", "flow resource")  # the resource wins over the profile
    assert v["config.dbname"] == ("sales", "flow resource")
    assert v["config.password"] == ("***", "profile prod (profiles file) via secrets.db_password")
    assert v["config.token"] == ("***", "flow resource via env.TOKEN_B64 (base64-decoded, secret)")
    # deep merge: one header from the profile, one overridden by the resource
    assert v["config.headers.X-Team"] == ("ops", "profile prod (profiles file)")
    assert v["config.headers.X-Env"] == ("nightly", "flow resource")
    assert v["options.connect_timeout"] == ("10", "profile prod (profiles file)")
    assert "secret db_password = *** (from env=DB_PASSWORD)" in res.stdout
    _no_secret(res.stdout + res.stderr)

    as_json = cli("explain", str(flow), "--json", env=_env())
    assert as_json.exit_code == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    values = doc["resources"][0]["values"]
    assert values["config.password"] == {"value": "***", "origin": "profile prod (profiles file) via secrets.db_password"}
    assert values["config.port"]["origin"] == "flow resource"
    _no_secret(as_json.stdout)


def test_profile_override_and_profiles_file_option(cli, write_flow, tmp_path: Path) -> None:
    write_flow(PROFILES, name="profiles.yaml")
    flow = write_flow(FLOW)
    res = cli("explain", str(flow), "--profile", "dev", env=_env())
    assert res.exit_code == 0, res.stderr
    v = _values(res.stdout)
    assert v["config.host"] == ("localhost", "profile dev (profiles file)")
    assert v["config.user"] == ("dev", "profile dev (profiles file)")
    assert v["config.headers.X-Team"] == ("dev", "profile dev (profiles file)")
    assert v["config.port"] == ("6543", "flow resource")
    assert "config.password" not in v  # dev has none
    # dev neither decodes token nor sets connect_timeout: the raw value, not marked secret
    assert v["config.token"] == (_env()["TOKEN_B64"], "flow resource via env.TOKEN_B64")
    assert "options.connect_timeout" not in v

    other = tmp_path / "elsewhere" / "other-profiles.yaml"
    other.parent.mkdir()
    other.write_text("prod:\n  config: {host: other-host, user: alt}\n", encoding="utf-8")
    res = cli("explain", str(flow), "--profiles", str(other), env=_env())
    assert res.exit_code == 0, res.stderr
    v = _values(res.stdout)
    assert v["config.host"] == ("other-host", "profile prod (profiles file)")
    assert v["config.user"] == ("alt", "profile prod (profiles file)")

    res = cli("explain", str(flow), "--profile", "staging", env=_env())
    assert res.exit_code == 2
    assert "profile 'staging' not found (known: dev, prod)" in res.stderr


def test_profiles_reach_connectors_in_a_real_run(cli, write_flow, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    conn.close()
    write_flow(f"local:\n  config: {{path: '{tmp_path / 'wrong.db'}'}}\n  options: {{timeout: 5}}\n", name="profiles.yaml")
    write_flow(f"other:\n  config: {{path: '{db}'}}\n", name="alt/profiles.yaml")
    flow = write_flow("""
version: 1
flow:
  id: prof
  profiles_file: profiles.yaml
  workspace: {root: work}
resources:
  db:
    kind: db
    driver: sqlite3
    profile: local
jobs:
  - id: j
    steps:
      - id: q
        type: db_query
        inputs: {resource: db, sql: "SELECT count(*) AS n FROM t"}
""")
    bad = cli("run", str(flow), "--json")
    assert bad.exit_code == 1  # the profile's database has no table t
    assert "no such table: t" in bad.stderr
    good = cli("run", str(flow), "--json", "--profiles", str(tmp_path / "alt" / "profiles.yaml"), "--profile", "other")
    assert good.exit_code == 0, good.stderr
    doc = json.loads(good.stdout)
    show = json.loads(cli("runs", "show", doc["run_id"], "--json", "--state", doc["store"]).stdout)
    assert show["jobs"][0]["steps"][0]["outputs"]["rows"] == [{"n": 2}]


def test_doctor_names_missing_env_and_passes_when_set(cli, write_flow) -> None:
    write_flow(PROFILES, name="profiles.yaml")
    flow = write_flow(FLOW)
    res = cli("doctor", str(flow))
    assert res.exit_code == 2
    assert "FAIL env vars: missing: DB_PASSWORD, TOKEN_B64" in res.stdout
    res = cli("doctor", str(flow), env={"DB_PASSWORD": PASSWORD})
    assert res.exit_code == 2
    assert "missing: TOKEN_B64" in res.stdout and "DB_PASSWORD" not in res.stdout.split("missing:")[1]
    res = cli("doctor", str(flow), env=_env())
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "ok   env vars: all set" in res.stdout and "FAIL" not in res.stdout
    _no_secret(res.stdout + res.stderr)
    as_json = cli("doctor", str(flow), "--json", env=_env())
    assert as_json.exit_code == 0
    checks = {c["check"]: c for c in json.loads(as_json.stdout)["checks"]}
    assert checks["env vars"]["ok"] is True and checks["flow"]["ok"] is True


def test_doctor_checks_the_variables_the_profiles_need(cli, write_flow, tmp_path: Path) -> None:
    """A variable only a profile names was "all set" for doctor while run exited 2."""
    profiles = write_flow("""
        prod:
          config: {path: "{{ env.SHOP_DB }}"}
          options: {timeout: "{{ env.SHOP_TIMEOUT:30 }}"}
        other:
          config: {path: "{{ env.NOT_USED_BY_THIS_FLOW }}"}
        """, name="env_profiles.yaml")
    flow = write_flow("""
        version: 1
        flow: {id: profiled}
        resources:
          shop: {kind: db, driver: sqlite3, profile: prod}
        jobs:
          - id: a
            steps:
              - {id: q, type: db_query, inputs: {resource: shop, sql: "select 1 as one"}}
        """, name="profiled.yaml")
    env = {"AETHERFLOW_PROFILES_FILE": str(profiles)}
    res = cli("doctor", str(flow), env=env)
    assert res.exit_code == 2
    assert "FAIL env vars: missing: SHOP_DB" in res.stdout and "ok   profiles: prod" in res.stdout
    assert cli("run", str(flow), env=env).exit_code == 2  # what doctor warns about
    res = cli("doctor", str(flow), "--profiles", str(profiles), "--profile", "nope")
    assert res.exit_code == 2 and "FAIL profiles: profile(s) not found: nope" in res.stdout
    env["SHOP_DB"] = str(tmp_path / "shop.db")
    res = cli("doctor", str(flow), env=env)
    assert res.exit_code == 0 and "ok   env vars: all set" in res.stdout, res.stdout
    assert cli("run", str(flow), env=env).exit_code == 0
