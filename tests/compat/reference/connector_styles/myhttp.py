# the connector template of aetherflow-core's docs/19-connectors.md (Part 3), as written there
from aetherflow.core.api import register_connector, ConnectorBase

@register_connector(kind="rest", driver="myhttp")
class MyHttpConnector(ConnectorBase):

    def __init__(self, *, config, options):
        self.config = config
        self.options = options
        self._client = None

    def connect(self):
        if self._client is None:
            self._client = self._create_client()
        return self._client

    def _create_client(self):
        # use self.config and self.options only
        return {"base_url": self.config["base_url"], "timeout": self.options["timeout_seconds"]}
