"""Shell completion: run ids from the stores this machine knows."""

from __future__ import annotations

import os


def run_ids(incomplete: str) -> list[str]:
    from aetherflow.errors import AetherflowError
    from aetherflow.settings import settings_from_env
    from aetherflow.state.catalog import StoreCatalog

    try:
        settings = settings_from_env(dict(os.environ))
    except AetherflowError:  # a bad config file: no completion (the command itself will say why)
        return []
    catalog = StoreCatalog(settings.home, settings.state)
    found: list[str] = []
    for location in catalog.locations():
        try:
            store = catalog.open(location)
        except AetherflowError:
            continue
        try:
            found.extend(store.run_ids(incomplete))
        except AetherflowError:
            continue
        finally:
            store.close()
    return found
