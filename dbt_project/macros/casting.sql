{#- Amounts arrive as text, some shards with thousands separators ("1,280"). An unparseable
    amount becomes NULL and is caught by the not_null test on the column. -#}
{% macro parse_amount(column) -%}
    {{ dbt.safe_cast("replace(" ~ column ~ ", ',', '')", dbt.type_bigint()) }}
{%- endmacro %}

{#- The window of business days an incremental run replaces (vars set by Dagster). -#}
{% macro business_day_window(column) -%}
    {{ column }} between cast('{{ var("min_date") }}' as date) and cast('{{ var("max_date") }}' as date)
{%- endmacro %}

{#- The lake days a model reads: an incremental run's window, else every day (the window of a
    plain `dbt build`, dbt_project.yml). A shard lake table on BigQuery refuses any query
    without a filter on its day column (require_partition_filter), so a whole read names its
    days too; a literal range is a filter BigQuery can prune by. -#}
{% macro lake_days(column) -%}
    {%- if is_incremental() -%}
        {{ business_day_window(column) }}
    {%- else -%}
        {{ column }} between cast('1900-01-01' as date) and cast('9999-12-31' as date)
    {%- endif -%}
{%- endmacro %}

{#- The rows of an incremental window whose version the lake stored on a day before the window
    (`ranked` is the window's rows). Each version is kept at its earliest day, so such a row
    belongs to that day and the window leaves it out: the window's rows then equal a full
    rebuild's for its days. `key_columns` identify a version (quoted where they are keywords). -#}
{% macro stored_before_window(relation, day_column, key_columns) -%}
    exists (
        select 1
        from {{ relation }} as earlier
        where earlier.{{ day_column }} < cast('{{ var("min_date") }}' as date)
        {%- for column in key_columns %}
            and earlier.{{ column }} is not distinct from ranked.{{ column }}
        {%- endfor %}
    )
{%- endmacro %}

{#- Whether the run has a window of business days (Dagster passed min_date/max_date); a plain
    `dbt build` has none and rebuilds incremental cleansing models whole. -#}
{% macro business_day_windowed() -%}
    {{ return(var("min_date") != "1900-01-01" or var("max_date") != "9999-12-31") }}
{%- endmacro %}

{#- The same window as BigQuery partition literals, for static insert_overwrite: every day
    in the window is replaced, including days that are now empty. -#}
{% macro business_day_partitions() -%}
    {%- set start = modules.datetime.date.fromisoformat(var("min_date")) -%}
    {%- set end = modules.datetime.date.fromisoformat(var("max_date")) -%}
    {%- if (end - start).days > 4000 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set days = [] -%}
    {%- for offset in range((end - start).days + 1) -%}
        {%- do days.append("date('" ~ (start + modules.datetime.timedelta(days=offset)).isoformat() ~ "')") -%}
    {%- endfor -%}
    {{ return(days) }}
{%- endmacro %}
