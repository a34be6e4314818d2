-- CRM contacts without PII: the email survives only as the join key shared with orders.
select
    contact_id,
    {{ hash_pii('email') }} as email_key,
    lifecycle_stage,
    company,
    {{ to_jst_datetime('updated_at', "'UTC'") }} as updated_at
from {{ source('lake', 'crm_contacts') }}
