"""The example flows in flows/ really run (not only validate)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_json(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    res = cli(*args, "--json", env=env)
    assert res.stdout, res.stderr
    return json.loads(res.stdout)


def test_daily_flow_runs_on_the_default_store(cli, home: Path) -> None:
    doc = run_json(cli, "run", str(ROOT / "flows" / "daily.yaml"), "--param", "date=2026-11-20")
    assert doc["status"] == "SUCCESS", doc
    assert doc["jobs"] == {"probe": "SUCCESS", "report": "SUCCESS", "archive": "SUCCESS"}
    assert Path(doc["store"]) == home / "state.db"
    archived = list((home / "work" / "daily_sales" / "archive").glob("*/artifacts/sales-2026-11-20.csv"))
    assert len(archived) == 1
    assert archived[0].read_text().splitlines()[0] == "north,2026-11-20,5"


def test_etl_sqlite_flow_extracts_and_packs(cli, home: Path, tmp_path: Path) -> None:
    env = {"SHOP_DB": str(tmp_path / "shop.db")}
    doc = run_json(cli, "run", str(ROOT / "flows" / "etl_sqlite.yaml"), env=env)
    assert doc["status"] == "SUCCESS", doc
    assert doc["jobs"]["verify"] == "SUCCESS"  # rows == expected
    archive = next((home / "work" / "etl_sqlite" / "export").glob("*/artifacts/orders-2026-11-21.zip"))
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("orders-2026-11-21.csv").decode().splitlines() == ["id,customer,amount", "1,ada,12.5", "2,bob,7.0"]


def test_order_approval_flow_waits_and_resumes_by_key(cli, home: Path) -> None:
    doc = run_json(cli, "run", str(ROOT / "flows" / "order_approval.yaml"), "--key", "order42")
    assert doc["status"] == "WAITING"
    again = cli("run", str(ROOT / "flows" / "order_approval.yaml"), "--key", "order42")
    assert again.exit_code == 3 and doc["run_id"] in again.stderr
    res = cli("resume", "--key", "orderid::order42", "--event", "approved", "--data", '{"by": "ops"}')
    assert res.exit_code == 0, res.stderr
    shown = run_json(cli, "runs", "show", doc["run_id"])
    ship = next(j for j in shown["jobs"] if j["job_id"] == "ship")
    assert ship["status"] == "SUCCESS"
    assert ship["steps"][0]["outputs"]["message"] == "approved by ops"
