{#- Schemas are the warehouse layers themselves (`cleansing`, `fact`, `role_sales`, ...), not
    `<target schema>_<layer>`: Dagster groups and BigQuery datasets use the same names. A
    BigQuery sandbox prefixes every dataset (MINATO_BIGQUERY_DATASET_PREFIX); a change
    environment (`minato env`, MINATO_CHANGE_ENV_PREFIX) puts its own prefix before that, for
    models only: sources stay in production's datasets and are read there. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set layer = custom_schema_name if custom_schema_name is not none else target.schema -%}
    {%- if target.type == 'bigquery' -%}
        {{ env_var('MINATO_CHANGE_ENV_PREFIX', '') }}{{ env_var('MINATO_BIGQUERY_DATASET_PREFIX', '') }}{{ layer | trim }}
    {%- else -%}
        {{ layer | trim }}
    {%- endif -%}
{%- endmacro %}
