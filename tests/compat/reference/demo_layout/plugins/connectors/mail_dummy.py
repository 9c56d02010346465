from __future__ import annotations

from aetherflow.core.api import ConnectorBase, ConnectorInit, register_connector


@register_connector(kind="mail", driver="mail-dummy")
class MailDummy(ConnectorBase):
    """Keeps messages in memory instead of sending them (aetherflow-core demo shape)."""

    def __init__(self, init: ConnectorInit):
        super().__init__(init)
        self.sent = []

    def send(self, to, subject, body, **kwargs):
        self.sent.append((to, subject, body, kwargs))
