-- Search-Console exports report per JST calendar day already; one row per day and page.
with ranked as (
    select
        *,
        row_number() over (partition by date, page order by _loaded_at desc) as _version_rank
    from {{ source('lake', 'search_console_pages') }}
)

select
    cast(date as date) as metric_day,
    page,
    cast(clicks as {{ dbt.type_bigint() }}) as clicks,
    cast(impressions as {{ dbt.type_bigint() }}) as impressions,
    cast(ctr as {{ dbt.type_float() }}) as ctr,
    cast(position as {{ dbt.type_float() }}) as average_position
from ranked
where _version_rank = 1
