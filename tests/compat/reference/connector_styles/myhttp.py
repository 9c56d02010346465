# the shape of the connector template in aetherflow-core's docs/19-connectors.md: a ConnectorBase
# subclass whose __init__ takes keyword-only config and options, with a lazy connect()
from aetherflow.core.api import register_connector, ConnectorBase

@register_connector(kind="rest", driver="myhttp")
class LazyApi(ConnectorBase):

    def __init__(self, *, config, options):
        self.config = config
        self.options = options
        self._handle = None

    def connect(self):
        if self._handle is None:
            self._handle = {"base_url": self.config["base_url"], "timeout": self.options["timeout_seconds"]}
        return self._handle
