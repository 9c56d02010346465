"""aetherflow-core compatibility namespace: ``aetherflow.core.api`` re-exports ``aetherflow.api``."""
