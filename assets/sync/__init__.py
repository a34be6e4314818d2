"""Reverse ETL: warehouse models synced to operational systems, one asset per spec in syncs/.

The lead wires `sync_assets` and `sync_checks` into `dg.Definitions`, with the resources
`warehouse` (Warehouse), `notifier` (Notifier) and each spec's destination (a SyncDestination;
`crm_destination` for the CRM).
"""

from pathlib import Path

import dagster as dg

from assets.sync.assets import CHECK_NAME, build_sync_asset, build_sync_check
from assets.sync.engine import SyncReport, run_sync
from assets.sync.specs import SyncSpec, SyncSpecError, load_sync_specs

SYNCS_DIR = Path(__file__).with_name("syncs")

sync_specs: list[SyncSpec] = load_sync_specs(SYNCS_DIR)
sync_assets: list[dg.AssetsDefinition] = [build_sync_asset(spec) for spec in sync_specs]
sync_checks: list[dg.AssetChecksDefinition] = [build_sync_check(spec) for spec in sync_specs]

__all__ = [
    "CHECK_NAME",
    "SYNCS_DIR",
    "SyncReport",
    "SyncSpec",
    "SyncSpecError",
    "build_sync_asset",
    "build_sync_check",
    "load_sync_specs",
    "run_sync",
    "sync_assets",
    "sync_checks",
    "sync_specs",
]
