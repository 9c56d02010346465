"""`store copy`: commands on whole stores."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

from pathlib import Path
from typing import Annotated, Any

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app
from aetherflow.cli.support import guarded, process_env, stderr, stdout
from aetherflow.errors import ConflictError, UsageError

store_app = typer.Typer(
    help="Whole state stores.\n\nExample: aetherflow store copy state.db postgresql://aetherflow@db.example/ops",
    no_args_is_help=True,
)
root_app.add_typer(store_app, name="store")

#: run ids named in a refusal, at most
SHOWN_IDS = 10


@store_app.command("copy")
def store_copy(
    src: Annotated[str, typer.Argument(help="The store to copy from: a SQLite file or a postgresql:// URL.",
                                       show_default=False)],
    dst: Annotated[str, typer.Argument(help="The store to copy into (created if needed).", show_default=False)],
    state: o.StateUnused = None,
    as_json: o.Json = False,
) -> None:
    """Copy every run (jobs, steps, attempts, waits, events, history) from SRC to DST.

    Nothing is copied when a run id of SRC is already recorded in DST (exit 2, naming them) or
    when a run of SRC is being executed (exit 3). DST is added to the stores this machine knows,
    so `aetherflow resume RUN_ID` finds the copied runs.

    Example: aetherflow store copy ~/.local/state/aetherflow/state.db postgresql://aetherflow@db.example:5432/ops
    """
    from aetherflow.settings import settings_from_env
    from aetherflow.state.backends import is_url, open_store, public_location, store_exists
    from aetherflow.state.catalog import StoreCatalog
    from aetherflow.state.store import run_lock_key

    with guarded(as_json):
        settings = settings_from_env(process_env())
        src_loc, dst_loc = (loc if is_url(loc) else str(Path(loc).expanduser().absolute()) for loc in (src, dst))
        if public_location(src_loc) == public_location(dst_loc):
            raise UsageError("SRC and DST are the same store", code="usage.store_copy_same")
        if not store_exists(src_loc):
            raise UsageError(f"no store at {src_loc}", code="usage.store_copy_missing")
        source = open_store(src_loc)
        try:
            target = open_store(dst_loc)
            try:
                ids = source.run_ids("", limit=2**62)
                clash = sorted(set(ids) & set(target.run_ids("", limit=2**62)))
                if clash:
                    shown = ", ".join(clash[:SHOWN_IDS]) + (f" and {len(clash) - SHOWN_IDS} more" if len(clash) > SHOWN_IDS else "")
                    raise UsageError(
                        f"{len(clash)} run id(s) of {source.location} are already recorded in {target.location}: {shown}; "
                        "nothing was copied",
                        code="store.run_exists",
                        hint="copy into an empty store, or prune those runs from one of the two first",
                    )
                live = [r.run_id for r in source.list_runs(status="RUNNING", limit=2**62)
                        if not source.lock_is_free(run_lock_key(r.run_id))]
                if live:
                    raise ConflictError(
                        f"run(s) {', '.join(live[:SHOWN_IDS])} of {source.location} are being executed; nothing was copied",
                        code="store.run_live",
                        hint="copy when they have finished (or stop them first)",
                    )
                copied = _copy(source, target, list(reversed(ids)))
                StoreCatalog(settings.home, settings.state).remember(target.location)
                where = (source.location, target.location)
            finally:
                target.close()
        finally:
            source.close()
        if as_json:
            from aetherflow import render

            stdout(render.dumps({"copied": copied, "from": where[0], "to": where[1]}))
        else:
            stdout(f"copied {len(copied)} run(s) from {where[0]} to {where[1]}")


def _copy(source: Any, target: Any, ids: list[str]) -> list[str]:
    """Each run of ``ids`` (oldest first), one transaction each; a run gone from the source
    since it was listed (pruned meanwhile) is skipped with a warning."""
    copied: list[str] = []
    for rid in ids:
        dump = source.dump_run(rid)
        if dump is None:
            stderr(f"warning: run {rid} disappeared from {source.location} while copying; skipped")
            continue
        target.load_run(dump)
        copied.append(rid)
    return copied
