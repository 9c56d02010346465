"""aetherflow-example: a plugin package written only against ``aetherflow.core.api``.

aetherflow imports this package through the ``aetherflow.plugins`` entry point and collects
every class marked with ``@register_step`` / ``@register_connector`` and every callable marked
with ``@register_observer`` in it and its submodules:

* ``kv:sqlite`` connector (``kv.py``): a small key-value store in one SQLite file;
* ``example.kv_put``, ``example.kv_get``, ``example.kv_scan`` (``steps.py``): steps that reach
  the store through ``ctx.connectors[...]``; ``kv_scan`` is SKIPPED when there is nothing to do;
* ``example.classify`` (``steps.py``): declares the outcomes ``small`` and ``large``;
* ``example.greet`` (``legacy.py``): an aetherflow-core style step, ``run(self)`` returning a dict;
* ``append_event`` (``observer.py``): appends every event to ``$AETHERFLOW_EXAMPLE_EVENTS``.
"""

from aetherflow_example import kv, legacy, observer, steps

__all__ = ["kv", "legacy", "observer", "steps"]
__version__ = "0.1.0"
