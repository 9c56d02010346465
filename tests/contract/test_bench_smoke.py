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
    # it checks that the scenarios run: one noisy repetition is never judged against a target
    assert all(row.rstrip().endswith("—") for row in rows), rows
    assert "FAIL" not in proc.stdout and "pass" not in " ".join(rows)
    assert "result: not judged (--smoke checks that the scenarios run" in proc.stdout
    assert "comparison skipped" in proc.stdout
    assert not list(tmp_path.glob("aetherflow-bench-*")), "the bench leaves no temporary homes behind"


def test_the_process_floor_adds_no_op_steps_and_spawns_to_the_one_step_run() -> None:
    """The floor printed for the external.process scenario: the 1-step run, plus 99 no-op steps
    (the 1-step run has one already) and 100 spawns of `true`, for each pass that has all three."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("aetherflow_bench", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["aetherflow_bench"] = bench  # dataclasses look their module up
    try:
        spec.loader.exec_module(bench)
        title = {s.key: s.title for s in bench.SCENARIOS}
        one = bench.Result(title["run_1"], "aetherflow", [0.080], [1])
        noop = bench.Result(title["run_100"], "aetherflow", [0.130], [1], unit="step", units=99, per_unit_ms=0.5)
        proc = bench.Result(title["process_100"], "aetherflow", [0.240], [1], unit="step", units=100,
                            per_unit_ms=1.0, child_ms=0.6)
        core = {title["process_100"]: bench.Result(title["process_100"], "core", [0.600], [1])}
        (disk,) = bench.process_bounds([one, noop, proc], core)
        floor = 0.080 + 99 * 0.0005 + 100 * 0.0006
        assert abs(disk["floor"] - floor) < 1e-9
        assert abs(disk["best_ratio"] - 0.600 / floor) < 1e-9
        assert bench.process_bounds([one, proc], core) == []  # no no-op row: no floor
    finally:
        del sys.modules["aetherflow_bench"]
