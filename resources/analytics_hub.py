"""Analytics Hub (google-cloud-bigquery-analyticshub): data exchanges, listings, listing IAM.

Spoken in plain dicts with the API's field names (`display_name`, `bigquery_dataset`, …) so the
share plan can diff them; an IAM write carries the ETag that was read and a concurrent change is
refused as `StaleEtagError`.
"""

from __future__ import annotations

from typing import Any, Protocol

import dagster as dg
from pydantic import Field

from resources.gcp_access import StaleEtagError


class AnalyticsHubApi(Protocol):
    def get_data_exchange(self, name: str) -> dict | None: ...

    def create_data_exchange(self, parent: str, data_exchange_id: str, body: dict) -> None: ...

    def get_listing(self, name: str) -> dict | None: ...

    def create_listing(self, parent: str, listing_id: str, body: dict) -> None: ...

    def update_listing(self, name: str, body: dict, update_mask: list[str]) -> None: ...

    def get_iam_policy(self, resource: str) -> dict: ...

    def set_iam_policy(self, resource: str, policy: dict) -> None: ...


def as_dict(message: Any) -> dict:
    from google.protobuf import json_format

    raw = type(message).pb(message) if hasattr(type(message), "pb") else message
    return json_format.MessageToDict(raw, preserving_proto_field_name=True)


class AnalyticsHub(dg.ConfigurableResource):
    """The project's Analytics Hub in one location (Application Default Credentials)."""

    project: str = Field(description="GCP project that owns the exchanges.")
    location: str = Field(default="asia-northeast1", description="Exchange location.")
    api_endpoint: str | None = Field(
        default=None,
        description="host:port served without TLS or credentials (an emulator or a test).",
    )

    def _client(self) -> Any:
        # Imported and constructed lazily: nothing at import time may need a credential.
        from google.cloud import bigquery_analyticshub_v1

        if self.api_endpoint is None:
            return bigquery_analyticshub_v1.AnalyticsHubServiceClient()
        import grpc
        from google.cloud.bigquery_analyticshub_v1.services.analytics_hub_service.transports import (  # noqa: E501
            AnalyticsHubServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(self.api_endpoint)
        return bigquery_analyticshub_v1.AnalyticsHubServiceClient(
            transport=AnalyticsHubServiceGrpcTransport(channel=channel)
        )

    def _get(self, method: str, name: str) -> dict | None:
        from google.api_core.exceptions import NotFound

        try:
            return as_dict(getattr(self._client(), method)(name=name))
        except NotFound:
            return None

    def get_data_exchange(self, name: str) -> dict | None:
        return self._get("get_data_exchange", name)

    def create_data_exchange(self, parent: str, data_exchange_id: str, body: dict) -> None:
        from google.cloud import bigquery_analyticshub_v1 as hub

        # The ids are not flattened arguments of the client: they go in the request.
        self._client().create_data_exchange(
            request=hub.CreateDataExchangeRequest(
                parent=parent, data_exchange_id=data_exchange_id, data_exchange=body
            )
        )

    def get_listing(self, name: str) -> dict | None:
        return self._get("get_listing", name)

    def create_listing(self, parent: str, listing_id: str, body: dict) -> None:
        from google.cloud import bigquery_analyticshub_v1 as hub

        self._client().create_listing(
            request=hub.CreateListingRequest(parent=parent, listing_id=listing_id, listing=body)
        )

    def update_listing(self, name: str, body: dict, update_mask: list[str]) -> None:
        from google.cloud import bigquery_analyticshub_v1 as hub
        from google.protobuf import field_mask_pb2

        self._client().update_listing(
            listing=hub.Listing({**body, "name": name}),
            update_mask=field_mask_pb2.FieldMask(paths=update_mask),
        )

    def get_iam_policy(self, resource: str) -> dict:
        return as_dict(self._client().get_iam_policy(request={"resource": resource}))

    def set_iam_policy(self, resource: str, policy: dict) -> None:
        from google.api_core.exceptions import Aborted, Conflict, PreconditionFailed
        from google.iam.v1 import policy_pb2
        from google.protobuf import json_format

        message = json_format.ParseDict(policy, policy_pb2.Policy())
        try:
            self._client().set_iam_policy(request={"resource": resource, "policy": message})
        except (Aborted, Conflict, PreconditionFailed) as exc:
            raise StaleEtagError(f"{resource} changed since its policy was read") from exc
