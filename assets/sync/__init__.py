"""Reverse ETL: warehouse models synced to operational systems, one asset per sync.

Syncs are declared in YAML under syncs/ and read by specs.py. assets.py turns each into an asset
downstream of its dbt model, with a failed-rows check (`sync_assets()`, `sync_checks()`, which
pipelines/definitions.py registers). A sync asset runs engine.py: diff.py plans what changed
since the last acknowledged batch, delivery.py sends each batch (rate limit, retries, splitting)
to the spec's destination resource (a SyncDestination from resources/destinations, e.g.
`crm_destination`), and the run needs the resources `warehouse` and `notifier` as well.
"""
