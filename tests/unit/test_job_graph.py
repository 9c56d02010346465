"""Job order and dependency cycles (graphlib underneath): ties broken by file order, every
cycle reported once at its first job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aetherflow.engine.plan import topo_order
from aetherflow.spec import load_flow


def _jobs(*pairs: tuple[str, list[str]]) -> str:
    lines = ["version: 1", "flow: {id: g}", "jobs:"]
    for job, deps in pairs:
        lines.append(f"  - id: {job}")
        if deps:
            lines.append(f"    depends_on: [{', '.join(deps)}]")
        lines.append("    steps: [{id: s, type: noop}]")
    return "\n".join(lines) + "\n"


def test_order_follows_dependencies_then_file_order(write_flow: Callable[..., Path]) -> None:
    flow = write_flow(_jobs(("load", ["extract"]), ("report", []), ("extract", []), ("notify", ["load", "report"])))
    assert topo_order(load_flow(str(flow)).flow) == ("report", "extract", "load", "notify")


def test_every_cycle_is_reported_once(cli: Callable[..., object], write_flow: Callable[..., Path]) -> None:
    flow = write_flow(_jobs(("a", ["b"]), ("b", ["a"]), ("c", ["e"]), ("d", ["c"]), ("e", ["d"]), ("f", ["a"])))
    res = cli("validate", str(flow))
    assert res.exit_code == 2  # type: ignore[attr-defined]
    lines = [ln for ln in res.stderr.splitlines() if "flow.cycle" in ln]  # type: ignore[attr-defined]
    assert len(lines) == 2, res.stderr  # type: ignore[attr-defined]
    assert "dependency cycle: a -> b -> a (at jobs[0].depends_on)" in lines[0]
    assert "dependency cycle: c -> e -> d -> c (at jobs[2].depends_on)" in lines[1]
