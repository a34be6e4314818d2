"""Who may use a BigQuery dataset or a Cloud Storage bucket, read and written with its ETag.

The access plan (`assets/governance/`) speaks the APIs' own shapes: a dataset's `access` list
as the BigQuery REST API writes it (`{"role": "READER", "groupByEmail": …}`, authorized views as
`{"view": {…}}`) and a bucket's IAM `bindings`. Every write carries the ETag that was read, so a
concurrent change is refused (`StaleEtagError`) instead of overwritten.
"""

from __future__ import annotations

from typing import Any, Protocol

import dagster as dg
from pydantic import Field

from resources.identifiers import validate_identifier


class StaleEtagError(RuntimeError):
    """The resource changed since it was read: read it again and re-plan."""


class MissingResourceError(LookupError):
    """The dataset or bucket does not exist (yet): nothing to read or grant on."""


class AccessApi(Protocol):
    def dataset_access(self, dataset: str) -> tuple[list[dict], str]: ...

    def set_dataset_access(self, dataset: str, access: list[dict], etag: str) -> None: ...

    def bucket_policy(self, bucket: str) -> tuple[list[dict], str]: ...

    def set_bucket_policy(self, bucket: str, bindings: list[dict], etag: str) -> None: ...


class GcpAccess(dg.ConfigurableResource):
    """Dataset access entries (google-cloud-bigquery) and bucket IAM (google-cloud-storage)."""

    project: str = Field(description="GCP project of the datasets and buckets.")
    dataset_prefix: str = Field(default="", description="The warehouse's dataset prefix.")
    api_endpoint: str | None = Field(
        default=None,
        description="One endpoint for both APIs, without credentials (an emulator or a test).",
    )

    def _options(self) -> dict[str, Any]:
        if self.api_endpoint is None:
            return {}
        from google.auth.credentials import AnonymousCredentials

        return {
            "credentials": AnonymousCredentials(),
            "client_options": {"api_endpoint": self.api_endpoint},
        }

    def _dataset_id(self, dataset: str) -> str:
        prefix = validate_identifier(self.dataset_prefix) if self.dataset_prefix else ""
        return f"{self.project}.{prefix}{validate_identifier(dataset, what='dataset')}"

    def _bigquery(self) -> Any:
        # Imported and constructed lazily: nothing at import time may need a credential.
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, **self._options())

    def _storage(self) -> Any:
        from google.cloud import storage

        return storage.Client(project=self.project, **self._options())

    def dataset_access(self, dataset: str) -> tuple[list[dict], str]:
        from google.api_core.exceptions import NotFound

        try:
            found = self._bigquery().get_dataset(self._dataset_id(dataset))
        except NotFound as exc:
            raise MissingResourceError(f"dataset {dataset} does not exist") from exc
        return [entry.to_api_repr() for entry in found.access_entries], found.etag

    def set_dataset_access(self, dataset: str, access: list[dict], etag: str) -> None:
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import bigquery

        target = bigquery.Dataset(self._dataset_id(dataset))
        target.access_entries = [bigquery.AccessEntry.from_api_repr(e) for e in access]
        target._properties["etag"] = etag  # sent as If-Match: a concurrent change fails (412)
        try:
            self._bigquery().update_dataset(target, ["access_entries"])
        except PreconditionFailed as exc:
            raise StaleEtagError(f"dataset {dataset} changed since it was read") from exc

    def bucket_policy(self, bucket: str) -> tuple[list[dict], str]:
        from google.api_core.exceptions import NotFound

        try:
            policy = self._storage().bucket(bucket).get_iam_policy(requested_policy_version=3)
        except NotFound as exc:
            raise MissingResourceError(f"bucket {bucket} does not exist") from exc
        bindings = [
            {**binding, "members": sorted(binding["members"])}
            for binding in policy.to_api_repr().get("bindings", [])
        ]
        return bindings, policy.etag

    def set_bucket_policy(self, bucket: str, bindings: list[dict], etag: str) -> None:
        from google.api_core.exceptions import Conflict, PreconditionFailed
        from google.api_core.iam import Policy

        # Policy turns each binding's members into a set in place: give it copies.
        copies = [{**binding, "members": list(binding["members"])} for binding in bindings]
        policy = Policy.from_api_repr({"bindings": copies, "etag": etag, "version": 3})
        try:
            self._storage().bucket(bucket).set_iam_policy(policy)
        except (PreconditionFailed, Conflict) as exc:
            raise StaleEtagError(f"bucket {bucket} changed since it was read") from exc
