"""The aetherflow-core compatibility suite: flows and plugins written exactly as aetherflow-core's
docs and demos show them (files under ``reference/``), run through the real command line in
subprocesses. Each test copies what it needs into its own temporary directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REFERENCE = Path(__file__).resolve().parent / "reference"


@pytest.fixture
def reference(tmp_path: Path) -> Callable[[str], Path]:
    """reference("name") copies ``reference/name`` into the test's directory and returns the copy."""

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(REFERENCE / name, dst)
        return dst

    return copy


@pytest.fixture
def shown(af: Callable[..., Any]) -> Callable[[str], dict[str, Any]]:
    """shown(run_id) is ``aetherflow runs show RUN_ID --json``, parsed."""

    def show(run_id: str) -> dict[str, Any]:
        res = af("runs", "show", run_id, "--json")
        assert res.exit_code == 0, res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    return show

