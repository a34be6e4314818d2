"""Names every feature shares: the business time zone and the warehouse schemas Python writes.

dbt owns the schemas of its models (dbt_project.yml); these are the ones written from Python.
"""

# Business days, schedules and cron expressions of syncs are Tokyo wall clock; storage is UTC.
BUSINESS_TIMEZONE = "Asia/Tokyo"

# Raw ingested tables, quarantine included.
LAKE_SCHEMA = "lake"
# Reconciliation, anomaly history, on-call feedback and anomaly models.
MONITORING_SCHEMA = "monitoring"
