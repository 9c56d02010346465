# a ConnectorBase subclass without its own __init__: ConnectorBase's (init) shape
from aetherflow.core.api import ConnectorBase, register_connector


@register_connector("kv", "inherited")
class Inherited(ConnectorBase):
    def get(self, key):
        return {"name": self.name, "kind": self.kind, "driver": self.driver, "key": key, "prefix": self.config["prefix"]}
