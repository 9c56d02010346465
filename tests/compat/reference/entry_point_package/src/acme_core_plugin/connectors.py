from __future__ import annotations

from aetherflow.core.api import ConnectorBase, ConnectorInit, register_connector

__all__ = ["Board", "LegacyBoard"]


@register_connector(kind="board", driver="memory")
class Board(ConnectorBase):
    """Keeps posted messages in memory (ConnectorInit style)."""

    def __init__(self, init: ConnectorInit):
        super().__init__(init)
        self.channel = self.config["channel"]
        self._posts = []

    def post(self, message):
        self._posts.append(message)

    def count(self):
        return len(self._posts)


@register_connector(kind="board", driver="legacy")
class LegacyBoard:
    """The same in aetherflow-core's older (config, options) style."""

    def __init__(self, config, options):
        self.channel = config["channel"]
        self.limit = options.get("limit", 10)
        self._posts = []

    def post(self, message):
        if len(self._posts) >= self.limit:
            raise RuntimeError("board full")
        self._posts.append(message)

    def count(self):
        return len(self._posts)
