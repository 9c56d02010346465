"""One duration grammar for wait steps, wait_for_event timeouts and `runs prune --older-than`; one
time parser for `wait` `until:` and `resume --at`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aetherflow.durations import parse_duration, parse_time


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


def test_times_with_an_offset_are_that_instant_and_without_one_local_time() -> None:
    assert parse_time("2026-11-23T06:00:00+01:00") == datetime(2026, 11, 23, 5, 0, tzinfo=UTC).timestamp()
    assert parse_time(" 2026-11-23T05:00:00Z ") == datetime(2026, 11, 23, 5, 0, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-23 06:00") == datetime(2026, 11, 23, 6, 0).timestamp()  # naive: local time
    assert parse_time("2026-11-23") == datetime(2026, 11, 23).timestamp()
    for bad in ("", "tomorrow", "2026-13-01", "06:00", None, 1795000000, "2026-11-23T06:00:00+25:00"):
        assert parse_time(bad) is None, bad


def test_wait_until_and_resume_at_read_times_alike(cli: Callable[..., object], write_flow: Callable[..., Path]) -> None:
    """`wait` `until:` goes through the same parser as `resume --at` (it refused the spaces around
    a time that --at took)."""
    flow = write_flow("""
        version: 1
        flow: {id: w}
        jobs:
          - id: j
            steps:
              - {id: pause, type: wait, inputs: {until: " 2099-01-02T03:04:05Z "}}
    """)
    res = cli("run", str(flow), "--json")
    assert res.exit_code == 0, res.stderr  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    assert doc["status"] == "WAITING" and doc["waits"][0]["due_at"] == "2099-01-02T03:04:05+00:00"
    bad = write_flow(str(flow.read_text()).replace("2099-01-02T03:04:05Z", "next tuesday"), "bad.yaml")
    res = cli("run", str(bad), "--json")
    assert res.exit_code == 1  # type: ignore[attr-defined]
    assert "invalid until ' next tuesday ': use ISO-8601, e.g. 2026-11-23T06:00:00+01:00" in res.stderr  # type: ignore[attr-defined]
