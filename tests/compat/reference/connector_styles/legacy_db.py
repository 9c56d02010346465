# aetherflow-core's older connector shape: __init__(self, config, options)
from aetherflow.core.api import register_connector


@register_connector("db", "legacy-dummy")
class LegacyDummy:
    def __init__(self, config, options):
        self.config = config
        self.options = options

    def describe(self):
        return {"path": self.config["path"], "timeout": self.options.get("timeout")}
