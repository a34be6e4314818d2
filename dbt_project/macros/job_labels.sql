{#- The query comment of every dbt query, as JSON: with `job-label: true` (dbt_project.yml)
    dbt-bigquery turns its keys into job labels, the same labels Minato's own jobs carry
    (resources/warehouse/bigquery_labels.py), `dagster_run_id` included, so
    INFORMATION_SCHEMA.JOBS_BY_PROJECT attributes dbt's bytes to the model's asset (`cleansing/cleansing_orders`) and its business days. -#}
{% macro minato_job_labels(node) -%}
    {%- set labels = {"minato_env": env_var('MINATO_ENV', 'dev')} -%}
    {#- Set by the dbt assets for the dbt process they start (assets/dbt_models/costs.py). -#}
    {%- if env_var('DAGSTER_RUN_ID', '') -%}
        {%- do labels.update({"dagster_run_id": env_var('DAGSTER_RUN_ID', '')}) -%}
    {%- endif -%}
    {%- if node is not none and node.resource_type in ('model', 'snapshot', 'seed') -%}
        {%- do labels.update({"minato_asset": (node.config.get('schema') or node.schema) ~ '/' ~ node.name}) -%}
    {%- endif -%}
    {%- if var('min_date', '1900-01-01') != '1900-01-01' or var('max_date', '9999-12-31') != '9999-12-31' -%}
        {%- do labels.update({"minato_partition": var('min_date', '') ~ '_to_' ~ var('max_date', '')}) -%}
    {%- endif -%}
    {{- return(tojson(labels)) -}}
{%- endmacro %}
