# aetherflow-core plugin shape: importing the package registers everything (the decorators run
# when the submodules are imported); the entry point names a register() that has nothing to do
from .steps import *  # noqa: F401,F403
from .connectors import *  # noqa: F401,F403


def register():
    """Called by aetherflow-core without arguments; everything is registered at import."""
