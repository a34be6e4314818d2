{#- Pseudonymise a PII value for `cleansing`: a salted SHA-256 of the normalised value, so
    marts can join on it (orders <-> CRM contacts) without ever seeing it. The salt comes from
    MINATO_PII_SALT; set a secret one in production. -#}
{% macro hash_pii(column) -%}
    {{ return(adapter.dispatch('hash_pii')(column)) }}
{%- endmacro %}

{% macro default__hash_pii(column) -%}
    case when {{ column }} is null then null
         else sha256('{{ env_var("MINATO_PII_SALT", "minato-demo-salt") }}' || lower(trim({{ column }}))) end
{%- endmacro %}

{% macro bigquery__hash_pii(column) -%}
    IF({{ column }} IS NULL, NULL, TO_HEX(SHA256(CONCAT('{{ env_var("MINATO_PII_SALT", "minato-demo-salt") }}', LOWER(TRIM({{ column }}))))))
{%- endmacro %}
