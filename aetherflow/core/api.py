"""Compatibility alias: plugins written against aetherflow-core import from here."""

from aetherflow.api import *  # noqa: F403
from aetherflow.api import __all__  # noqa: F401
