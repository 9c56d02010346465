"""Commands that read every store this machine used skip one that cannot be opened (a database
server that does not answer) with a warning, and go on with the others; the store --state names
is never skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

DEAD = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"  # nothing listens on port 1


def test_an_unreachable_remembered_store_is_skipped_with_a_warning(cli: Callable[..., object], home: Path,
                                                                  write_flow: Callable[..., Path]) -> None:
    flow = write_flow("version: 1\nflow: {id: f}\njobs: [{id: a, steps: [{id: s, type: noop}]}]\n")
    assert cli("run", str(flow), "--run-id", "kept").exit_code == 0  # type: ignore[attr-defined]
    with open(home / "stores", "a", encoding="utf-8") as fh:
        fh.write(DEAD + "\n")
    for args in (("runs", "list", "--json"), ("locks", "list", "--json"), ("status", "--json")):
        res = cli(*args)
        assert res.exit_code == 0, (args, res.stderr)  # type: ignore[attr-defined]
        assert "skipping store postgresql://nobody@127.0.0.1:1/none" in res.stderr, args  # type: ignore[attr-defined]
        json.loads(res.stdout)  # type: ignore[attr-defined]
    runs = json.loads(cli("runs", "list", "--json").stdout)["runs"]  # type: ignore[attr-defined]
    assert [r["run_id"] for r in runs] == ["kept"]
    res = cli("runs", "show", "nope")  # looked for in every store: the dead one is skipped
    assert res.exit_code == 2 and "unknown run id 'nope'" in res.stderr  # type: ignore[attr-defined]
    assert "skipping store" in res.stderr  # type: ignore[attr-defined]


def test_the_store_state_names_is_never_skipped(cli: Callable[..., object]) -> None:
    res = cli("runs", "list", "--state", DEAD)
    assert res.exit_code == 1  # type: ignore[attr-defined]
    assert "skipping" not in res.stderr and "Traceback" not in res.stderr  # type: ignore[attr-defined]
