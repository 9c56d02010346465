# an aetherflow-core style step (run(self), a dict returned) that uses the four connectors
from aetherflow.core.api import Step, register_step


@register_step("probe_connectors")
class ProbeConnectors(Step):
    required_inputs = {"mail", "db", "api", "kv"}

    def run(self):
        self.validate()
        mail = self.ctx.connectors[self.inputs["mail"]]
        mail.send(["ops@example.com"], "hello", "body", cc=None)
        db = self.ctx.connectors[self.inputs["db"]]
        api = self.ctx.connectors[self.inputs["api"]]
        kv = self.ctx.connectors[self.inputs["kv"]]
        return {
            "mail": {"name": mail.name, "kind": mail.kind, "driver": mail.driver, "sent": len(mail.sent),
                     "from": mail.config["from_addr"], "retry": mail.options["retry"]["max_attempts"]},
            "db": db.describe(),
            "api": api.connect(),
            "kv": kv.get("k1"),
        }
