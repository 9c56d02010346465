"""`python bench/run.py --smoke` runs end to end and prints its table (no timing asserts: the
figures depend on the machine; docs/performance.md has real ones)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_prints_the_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    header = next((line for line in proc.stdout.splitlines() if line.startswith("scenario")), None)
    assert header is not None, proc.stdout
    for column in ("median", "min", "max", "per unit", "peak RSS", "target", "result"):
        assert column in header
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("aetherflow --version", "run, 1 no-op", "run, 100 no-op"))]
    assert len(rows) == 3, proc.stdout
    assert "comparison skipped" in proc.stdout
    assert not list(tmp_path.glob("aetherflow-bench-*")), "the bench leaves no temporary homes behind"
