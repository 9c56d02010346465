"""Resource fields decoded by a plugin decoder (``register_decoder``) as well as base64."""

from __future__ import annotations

import base64
import codecs
import json
import sqlite3
import textwrap
from pathlib import Path

PLUGIN = '''
import codecs
from aetherflow.api import register_decoder


@register_decoder("rot13")
def rot13(value):
    return codecs.decode(value, "rot13")
'''


def make_plugin(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "rotdecoder.py").write_text(textwrap.dedent(PLUGIN))
    return d


def flow_text(db_field: str, decoder: str) -> str:
    return f"""
    version: 1
    flow: {{id: decode_demo}}
    resources:
      shop:
        kind: db
        driver: sqlite3
        config: {{path: "{db_field}"}}
        decode: {{config: {{path: {decoder}}}}}
    jobs:
      - id: q
        steps:
          - id: count
            type: db_query
            inputs: {{resource: shop, sql: "SELECT COUNT(*) AS n FROM t"}}
            outputs: {{n: "{{{{ result.rows.0.n }}}}"}}
    """


def make_db(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    con.commit()
    con.close()
    return db


def test_plugin_decoder_decodes_a_resource_field(cli, tmp_path: Path, write_flow) -> None:
    db = make_db(tmp_path)
    plugins = make_plugin(tmp_path)
    flow = write_flow(flow_text(codecs.encode(str(db), "rot13"), "rot13"))
    res = cli("run", str(flow), "--plugin-path", str(plugins), "--json")
    assert res.exit_code == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert shown["jobs"][0]["outputs"] == {"n": 3}
    explained = cli("explain", str(flow), "--json", env={"AETHERFLOW_PLUGIN_PATHS": str(plugins)})
    value = json.loads(explained.stdout)["resources"][0]["values"]["config.path"]
    assert value["value"] == "***" and "rot13-decoded" in value["origin"]


def test_base64_decoder_by_name_and_by_true(cli, tmp_path: Path, write_flow) -> None:
    db = make_db(tmp_path)
    encoded = base64.b64encode(str(db).encode()).decode()
    for spelling in ("base64", "true"):
        flow = write_flow(flow_text(encoded, spelling), name=f"flow_{spelling}.yaml")
        res = cli("run", str(flow))
        assert res.exit_code == 0, res.stderr


def test_unknown_decoder_is_a_resolution_error(cli, tmp_path: Path, write_flow) -> None:
    flow = write_flow(flow_text("whatever", "nosuch"))
    res = cli("run", str(flow))
    assert res.exit_code == 2
    assert "resource.unknown_decoder" in res.stderr and "nosuch" in res.stderr
    assert "Traceback" not in res.stderr
