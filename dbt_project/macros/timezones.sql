{#- Shards store naive wall-clock text in their own timezone (`_source_tz`, set at ingestion
    from shards.yaml). Analysts read JST wall-clock DATETIMEs, so every instant is converted:
    source zone -> instant (UTC) -> Asia/Tokyo wall clock. -#}
{% macro to_jst_datetime(text_column, source_tz) -%}
    {{ return(adapter.dispatch('to_jst_datetime')(text_column, source_tz)) }}
{%- endmacro %}

{% macro default__to_jst_datetime(text_column, source_tz) -%}
    timezone('Asia/Tokyo', timezone({{ source_tz }}, strptime(substr(replace({{ text_column }}, 'T', ' '), 1, 19), '%Y-%m-%d %H:%M:%S')))
{%- endmacro %}

{% macro bigquery__to_jst_datetime(text_column, source_tz) -%}
    DATETIME(TIMESTAMP(PARSE_DATETIME('%Y-%m-%d %H:%M:%S', SUBSTR(REPLACE({{ text_column }}, 'T', ' '), 1, 19)), {{ source_tz }}), 'Asia/Tokyo')
{%- endmacro %}
