"""The pytest plugin of aetherflow-example's own tests (``-p aetherflow_example_pytest`` in its
pyproject.toml): running them leaves the checkout as it was. Python's bytecode, pytest's
rewritten test modules included, goes to ``$TMPDIR/aetherflow-pycache-<uid>`` (where the
repository's ``.ci/run`` puts it), for the test process and the aetherflow processes the tests
start; a ``PYTHONPYCACHEPREFIX`` already set wins.

It is a top-level module of the installed distribution, and pytest loads it before anything of
the checkout: a conftest.py could not do it, since pytest writes a conftest's own bytecode
before it runs it, nor a module of the ``aetherflow_example`` package, whose ``__init__``
imports aetherflow first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: Any) -> None:
    if not sys.pycache_prefix:
        sys.pycache_prefix = os.path.join(tempfile.gettempdir(), f"aetherflow-pycache-{os.getuid()}")
    os.environ.setdefault("PYTHONPYCACHEPREFIX", sys.pycache_prefix)  # the processes the tests start
