"""The utility's head-end platform (CPython 3.11): storage (store.py, schema.py,
migrations/), MQTT ingestion workers, the operators' web console and online
top-up. docs/HEADEND.md describes it; tools/headend.py is its reference CLI."""
