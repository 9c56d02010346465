from aetherflow.cli import entry

entry()
