"""Shell completion helpers: suggest run ids from the known stores. Kept light (stdlib sqlite3
opened read-only, no aetherflow engine imports) so completion stays fast."""

from __future__ import annotations

import os
from pathlib import Path


def _stores() -> list[Path]:
    explicit = os.environ.get("AETHERFLOW_STATE")
    if explicit:
        return [Path(explicit)]
    home = os.environ.get("AETHERFLOW_HOME")
    if home:
        base = Path(home)
    else:
        xdg = os.environ.get("XDG_STATE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".local" / "state") / "aetherflow"
    out = [base / "state.db"]
    reg = base / "stores"
    if reg.exists():
        out += [Path(line.strip()) for line in reg.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [p for p in dict.fromkeys(out) if p.exists()]


def run_ids(incomplete: str) -> list[str]:
    import sqlite3

    found: list[str] = []
    for p in _stores():
        try:
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=0.5)
            try:
                rows = db.execute(
                    "SELECT run_id FROM runs WHERE run_id LIKE ? ORDER BY created_at DESC LIMIT 50",
                    (incomplete.replace("%", "") + "%",),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            continue
        found.extend(r[0] for r in rows)
    return found
