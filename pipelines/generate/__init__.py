"""Code generators of the code location: dbt models rendered from metadata CSVs with Jinja.

- `cleansing`: `metadata/*.csv` -> `cleansing_*` and `cleansing_secret_*` models (cleansing.py);
- `source`: request forms -> dbt source YAML, staging model and docs (source_requests.py);
- `partner`: a partner's requested tables/columns -> `public_<id>_<name>` marts (partners.py).

Every generator returns the files it owns as `{relative path: text}`; files.py writes them or,
with `--check`, compares them with what is on disk. Templates live in templates/.
"""
