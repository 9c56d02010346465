"""One duration grammar for wait steps, wait_for_event timeouts and `runs prune --older-than`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from aetherflow.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), (90, 90.0), (1.5, 1.5), ("500ms", 0.5), ("30s", 30.0), ("30m", 1800.0), ("2h", 7200.0),
    ("1.5d", 129600.0), ("2w", 1209600.0), (" 3 m ", 180.0), ("0", 0.0),
])
def test_valid(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "-5s", "5x", "1e3", "5 s s", None, True, [], "1,5d", "d"])
def test_invalid(text: object) -> None:
    assert parse_duration(text) is None


def test_unit_required() -> None:
    assert parse_duration("30", unit_required=True) is None
    assert parse_duration(30, unit_required=True) is None
    assert parse_duration("30d", unit_required=True) == 30 * 86400.0


def test_prune_takes_fractions_and_weeks_and_refuses_a_bare_number(cli: Callable[..., object]) -> None:
    for age in ("1.5d", "2w"):
        res = cli("runs", "prune", "--older-than", age, "--json")
        assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
        assert json.loads(res.stdout)["would_prune"] == []  # type: ignore[attr-defined]
    res = cli("runs", "prune", "--older-than", "30")
    assert res.exit_code == 2 and "unit" in res.stderr  # type: ignore[attr-defined]


def test_wait_step_takes_weeks(cli: Callable[..., object], write_flow: Callable[..., Path]) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: w}
        jobs:
          - id: j
            steps:
              - {id: pause, type: wait, inputs: {duration: 2w}}
    """)
    res = cli("run", str(flow), "--json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    assert doc["status"] == "WAITING"
    due = doc["waits"][0]["due_at"]
    assert due is not None
