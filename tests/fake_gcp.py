"""An in-memory fake of the BigQuery dataset, Cloud Storage IAM and Analytics Hub APIs.

It keeps each resource with an ETag that changes on every write, refuses a write carrying a
stale ETag (as the APIs answer 412), and records every request in the APIs' REST shape, so
tests assert exactly what would be sent.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from resources.gcp_access import StaleEtagError


class FakeGcp:
    def __init__(self, project: str = "minato-test") -> None:
        self.project = project
        self.datasets: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._etags = itertools.count(1)
        # Called after a read, before the caller writes: simulates someone else's change.
        self.after_read: Callable[[str], None] | None = None

    def _etag(self) -> str:
        return f"etag-{next(self._etags)}"

    def add_dataset(self, name: str, access: list[dict] | None = None) -> None:
        self.datasets[name] = {"access": copy.deepcopy(access or []), "etag": self._etag()}

    def add_bucket(self, name: str, bindings: list[dict] | None = None) -> None:
        self.buckets[name] = {"bindings": copy.deepcopy(bindings or []), "etag": self._etag()}

    def _after_read(self, resource: str) -> None:
        if self.after_read is not None:
            hook, self.after_read = self.after_read, None  # once
            hook(resource)

    # BigQuery: datasets.get / datasets.patch (If-Match)
    def dataset_access(self, dataset: str) -> tuple[list[dict], str]:
        path = f"/bigquery/v2/projects/{self.project}/datasets/{dataset}"
        self.requests.append({"method": "GET", "path": path})
        found = self.datasets[dataset]
        result = copy.deepcopy(found["access"]), found["etag"]
        self._after_read(dataset)
        return result

    def set_dataset_access(self, dataset: str, access: list[dict], etag: str) -> None:
        path = f"/bigquery/v2/projects/{self.project}/datasets/{dataset}"
        self.requests.append(
            {
                "method": "PATCH",
                "path": path,
                "headers": {"If-Match": etag},
                "body": {"access": copy.deepcopy(access)},
            }
        )
        found = self.datasets[dataset]
        if etag != found["etag"]:
            raise StaleEtagError(f"412 Precondition Failed: dataset {dataset}")
        found.update(access=copy.deepcopy(access), etag=self._etag())

    # Cloud Storage: buckets.getIamPolicy / buckets.setIamPolicy (etag in the body)
    def bucket_policy(self, bucket: str) -> tuple[list[dict], str]:
        path = f"/storage/v1/b/{bucket}/iam"
        self.requests.append(
            {"method": "GET", "path": path, "params": {"optionsRequestedPolicyVersion": 3}}
        )
        found = self.buckets[bucket]
        result = copy.deepcopy(found["bindings"]), found["etag"]
        self._after_read("gs://" + bucket)
        return result

    def set_bucket_policy(self, bucket: str, bindings: list[dict], etag: str) -> None:
        path = f"/storage/v1/b/{bucket}/iam"
        body = {"bindings": copy.deepcopy(bindings), "etag": etag, "version": 3}
        self.requests.append({"method": "PUT", "path": path, "body": body})
        found = self.buckets[bucket]
        if etag != found["etag"]:
            raise StaleEtagError(f"412 Precondition Failed: bucket {bucket}")
        found.update(bindings=copy.deepcopy(bindings), etag=self._etag())

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] != "GET"]
