"""State stores: the store protocol and its records (store.py), the backends (sqlite.py), which
backend a location selects (backends.py) and the stores this machine has used (catalog.py)."""
