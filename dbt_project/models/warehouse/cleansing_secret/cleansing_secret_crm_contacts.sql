-- Unmasked CRM contact PII. Restricted; never read by marts.
select
    contact_id,
    {{ hash_pii('email') }} as email_key,
    trim(email) as email,
    full_name,
    nullif(phone, '') as phone
from {{ source('lake', 'crm_contacts') }}
