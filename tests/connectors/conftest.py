"""Helpers for the connector tests: run a flow through the real CLI and read the stored run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class FlowRun:
    def __init__(self, result: Any, doc: dict[str, Any] | None, shown: dict[str, Any] | None) -> None:
        self.result = result
        self.doc = doc or {}
        self.shown = shown or {}

    @property
    def run_id(self) -> str:
        return str(self.doc["run_id"])

    def step(self, job: str, step: str) -> dict[str, Any]:
        for j in self.shown["jobs"]:
            if j["job_id"] == job:
                for s in j["steps"]:
                    if s["step_id"] == step:
                        return dict(s)
        raise AssertionError(f"no step {job}.{step} in {json.dumps(self.shown)[:2000]}")


@pytest.fixture
def run_flow(cli: Callable[..., Any]) -> Callable[..., FlowRun]:
    """``run_flow(path, *extra_args)``: `aetherflow run PATH --json` then `runs show --json`."""

    def run(path: Path, *args: str, env: dict[str, str] | None = None) -> FlowRun:
        res = cli("run", str(path), "--json", *args, env=env)
        try:
            doc = json.loads(res.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"run printed no JSON (exit {res.exit_code}):\n{res.stdout}\n{res.stderr}") from exc
        shown = None
        if doc.get("run_id") and doc.get("store"):
            show = cli("runs", "show", doc["run_id"], "--json", "--state", doc["store"], env=env)
            assert show.exit_code == 0, show.stderr
            shown = json.loads(show.stdout)
        return FlowRun(res, doc, shown)

    return run
