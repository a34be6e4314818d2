-- Every ingested version was selected for the JST business day of its updated_at, or for the
-- next one through the overlap window (30 minutes, assets/ingestion/lake_tables.py) when the
-- earlier day's partition did not have it; after the source-zone -> JST conversion the two
-- must agree. A shard with a wrong timezone in shards.yaml (the 9-hour bug) fails here.
{%- set day_start = "cast(business_day as " ~ dbt.type_timestamp() ~ ")" %}
select shard, client_id, order_id, updated_at, business_day
from {{ ref('cleansing_orders') }}
where updated_at < {{ dbt.dateadd('minute', -30, day_start) }}
    or updated_at >= {{ dbt.dateadd('day', 1, day_start) }}
