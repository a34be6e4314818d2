{#- Schemas are the warehouse layers themselves (`cleansing`, `fact`, `role_sales`, ...), not
    `<target schema>_<layer>`: Dagster groups and BigQuery datasets use the same names. A
    BigQuery deployment prefixes every dataset (minato_dataset_prefix); a change
    environment (`minato env`, MINATO_CHANGE_ENV_PREFIX) puts its own prefix before that, for
    models only: sources stay in production's datasets and are read there. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set layer = custom_schema_name if custom_schema_name is not none else target.schema -%}
    {%- if target.type == 'bigquery' -%}
        {{ env_var('MINATO_CHANGE_ENV_PREFIX', '') }}{{ minato_dataset_prefix() }}{{ layer | trim }}
    {%- else -%}
        {{ layer | trim }}
    {%- endif -%}
{%- endmacro %}

{#- MINATO_BIGQUERY_DATASET_PREFIX, else MINATO_ENV's: none in prod, `staging_`, `dev_<user>_`.
    resources/settings.py::dataset_prefix says the same (tests/test_settings.py renders both);
    sources.yml spells it out, YAML properties cannot call macros. -#}
{% macro minato_dataset_prefix() -%}
    {{ return(env_var('MINATO_BIGQUERY_DATASET_PREFIX', {'prod': '', 'staging': 'staging_'}.get(env_var('MINATO_ENV', 'dev'), 'dev_' ~ (env_var('USER', 'local') | lower | replace('.', '_') | replace('-', '_')) ~ '_'))) }}
{%- endmacro %}
