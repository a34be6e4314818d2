"""Landing-file ingestion: SaaS exports dropped into the landing zone (folder or S3 bucket).

- `search_console/pages_<YYYY-MM-DD>.csv`: daily page clicks, one file per JST day, loaded into
  the matching `business_day` partition of `lake.search_console_pages`.
- `crm/contacts_<YYYY-MM-DD>.csv`: a full CRM contacts export; the newest file replaces
  `lake.crm_contacts`.

The landing sensor (pipelines/sensors.py) starts these runs as files arrive.
"""

import csv
import datetime as dt
import functools
import io
import re

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.constants import LAKE_SCHEMA
from assets.ingestion.origin import with_origin
from assets.ingestion.quarantine import (
    QUARANTINE_PARTITION_COLUMNS,
    QUARANTINE_SPLIT_BY,
    QUARANTINE_TABLE,
    split_valid_rows,
)
from assets.partitions import business_days
from resources import settings
from resources.landing import LandingStore
from resources.warehouse import PartitionWrite, Warehouse

SEARCH_CONSOLE_PAGES_KEY = dg.AssetKey([LAKE_SCHEMA, "search_console_pages"])
CRM_CONTACTS_KEY = dg.AssetKey([LAKE_SCHEMA, "crm_contacts"])
SEARCH_CONSOLE_PREFIX = "search_console/"
CRM_CONTACTS_PREFIX = "crm/"
_SEARCH_CONSOLE_FILE = re.compile(r"^search_console/pages_(\d{4}-\d{2}-\d{2})\.csv$")
_CRM_CONTACTS_FILE = re.compile(r"^crm/contacts_\d{4}-\d{2}-\d{2}\.csv$")


def search_console_key(day: str) -> str:
    return f"{SEARCH_CONSOLE_PREFIX}pages_{day}.csv"


def search_console_day(key: str) -> str | None:
    """The business day a landed file belongs to, or None if it is no Search-Console export."""
    match = _SEARCH_CONSOLE_FILE.fullmatch(key)
    return match.group(1) if match else None


def is_crm_contacts_file(key: str) -> bool:
    return bool(_CRM_CONTACTS_FILE.fullmatch(key))


def read_csv_as_text(payload: bytes, source: str) -> pa.Table:
    """Every column as text: exports are raw input, typed in `cleansing` after validation."""
    try:
        reader = csv.DictReader(io.StringIO(payload.decode("utf-8-sig")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise dg.Failure(f"{source}: not a UTF-8 CSV file ({exc})", allow_retries=False) from exc
    names = reader.fieldnames or []
    if not names:
        raise dg.Failure(f"{source}: empty file, no header", allow_retries=False)
    return pa.table(
        {name: pa.array([row[name] or None for row in rows], pa.string()) for name in names}
    )


def _require_columns(data: pa.Table, required: set[str], source: str) -> None:
    missing = required - set(data.column_names)
    if missing:
        raise dg.Failure(f"{source}: missing column(s) {sorted(missing)}", allow_retries=False)


def load_search_console_pages(
    context: dg.AssetExecutionContext, landing: LandingStore, warehouse: Warehouse
) -> dg.MaterializeResult:
    loaded_at = dt.datetime.now(dt.UTC)
    pieces = []
    days = [dt.date.fromisoformat(key) for key in context.partition_keys]
    for day in days:
        key = search_console_key(day.isoformat())
        try:
            payload = landing.read_bytes(key)
        except FileNotFoundError as exc:
            raise dg.Failure(f"{key} has not landed yet", allow_retries=False) from exc
        data = read_csv_as_text(payload, key)
        _require_columns(data, {"date", "page", "clicks", "impressions"}, key)
        pieces.append(with_origin(data, _business_day=day, _source_table=key, _loaded_at=loaded_at))
    data = pa.concat_tables(pieces)
    split = split_valid_rows(
        data,
        logical_table="search_console_pages",
        key_columns=("date", "page"),
        checks=[
            ("page", "not_null"),
            ("date", "date"),
            ("clicks", "integer"),
            ("impressions", "integer"),
        ],
    )
    # A file holding another day's rows is a broken export, not a bad row: refuse it whole.
    misdated = [
        row for row in split.loaded.to_pylist() if row["date"] != row["_business_day"].isoformat()
    ]
    if misdated:
        raise dg.Failure(
            f"{len(misdated)} row(s) dated outside their file's day, e.g. {misdated[0]['date']} "
            f"in {misdated[0]['_source_table']}",
            allow_retries=False,
        )
    partitions = tuple((day,) for day in days)
    warehouse.replace_partitions_atomically(
        [
            PartitionWrite(
                LAKE_SCHEMA, "search_console_pages", split.loaded, ("_business_day",), partitions
            ),
            PartitionWrite(
                LAKE_SCHEMA,
                QUARANTINE_TABLE,
                split.quarantined,
                QUARANTINE_PARTITION_COLUMNS,
                tuple(("search_console_pages", day, None) for day in days),
                QUARANTINE_SPLIT_BY,
            ),
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "files": len(days),
            "source_rows": data.num_rows,
            "loaded_rows": split.loaded.num_rows,
            "quarantined_rows": split.quarantined_rows,
            "dagster/row_count": split.loaded.num_rows,
        }
    )


class CrmContactsConfig(dg.Config):
    file_key: str | None = None  # the sensor names the file; by hand, the newest export


def load_crm_contacts(
    context: dg.AssetExecutionContext,
    config: CrmContactsConfig,
    landing: LandingStore,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    key = config.file_key
    if key is None:
        exports = [
            f for f in landing.list_files(CRM_CONTACTS_PREFIX) if is_crm_contacts_file(f.key)
        ]
        if not exports:
            raise dg.Failure(
                f"no {CRM_CONTACTS_PREFIX}contacts_<date>.csv has landed", allow_retries=False
            )
        key = max(exports, key=lambda f: f.key).key  # dated names: the newest export sorts last
    if not is_crm_contacts_file(key):
        raise dg.Failure(f"{key} is not a CRM contacts export", allow_retries=False)
    data = read_csv_as_text(landing.read_bytes(key), key)
    _require_columns(data, {"contact_id", "email", "updated_at"}, key)
    export_day = dt.date.fromisoformat(key.removeprefix(CRM_CONTACTS_PREFIX + "contacts_")[:10])
    data = with_origin(
        data, _business_day=export_day, _source_table=key, _loaded_at=dt.datetime.now(dt.UTC)
    )
    split = split_valid_rows(
        data,
        logical_table="crm_contacts",
        key_columns=("contact_id",),
        checks=[("contact_id", "not_null"), ("updated_at", "datetime")],
    )
    counts = pc.value_counts(split.loaded["contact_id"])
    duplicated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
    if duplicated:
        raise dg.Failure(f"{key}: duplicated contact_id(s) {duplicated[:10]}", allow_retries=False)
    warehouse.replace_partitions_atomically(
        [
            PartitionWrite(LAKE_SCHEMA, "crm_contacts", split.loaded, (), ((),)),
            PartitionWrite(
                LAKE_SCHEMA,
                QUARANTINE_TABLE,
                split.quarantined,
                QUARANTINE_PARTITION_COLUMNS,
                (("crm_contacts", export_day, None),),
                QUARANTINE_SPLIT_BY,
            ),
        ]
    )
    context.log.info(f"loaded {split.loaded.num_rows} contacts from {key}")
    return dg.MaterializeResult(
        metadata={
            "source_file": key,
            "source_rows": data.num_rows,
            "loaded_rows": split.loaded.num_rows,
            "quarantined_rows": split.quarantined_rows,
            "dagster/row_count": split.loaded.num_rows,
        }
    )


def _kinds() -> set[str]:
    return {"csv", settings.warehouse_kind()}


def build_search_console_pages() -> dg.AssetsDefinition:
    @dg.asset(
        key=SEARCH_CONSOLE_PAGES_KEY,
        group_name=LAKE_SCHEMA,
        description="Search-Console daily page clicks, one landed CSV per JST day.",
        partitions_def=business_days(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="warehouse",
        kinds=_kinds(),
    )
    def search_console_pages(
        context: dg.AssetExecutionContext, landing: LandingStore, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        return load_search_console_pages(context, landing, warehouse)

    return search_console_pages


def build_crm_contacts() -> dg.AssetsDefinition:
    @dg.asset(
        key=CRM_CONTACTS_KEY,
        group_name=LAKE_SCHEMA,
        description="The newest full CRM contacts export (contains PII; read only by cleansing).",
        pool="warehouse",
        kinds=_kinds(),
    )
    def crm_contacts(
        context: dg.AssetExecutionContext,
        config: CrmContactsConfig,
        landing: LandingStore,
        warehouse: Warehouse,
    ) -> dg.MaterializeResult:
        return load_crm_contacts(context, config, landing, warehouse)

    return crm_contacts


@functools.cache
def landing_file_assets() -> tuple[dg.AssetsDefinition, ...]:
    """The SaaS-export lake tables."""
    return (build_search_console_pages(), build_crm_contacts())
