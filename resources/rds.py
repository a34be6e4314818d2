"""Amazon RDS: the control-plane client snapshot-restore ingestion and its janitor use.

The boto3 client is built when a run asks for it, never at import or definition time, from the
usual AWS credential chain (`AWS_*` variables, an instance or task role).
"""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from pydantic import Field


class RdsApi(dg.ConfigurableResource):
    """The RDS API, and how this process reaches an instance it restored."""

    region_name: str | None = Field(
        default=None, description="AWS region; unset: AWS_REGION / AWS_DEFAULT_REGION."
    )
    endpoint_url: str | None = Field(
        default=None, description="Another RDS API endpoint (a VPC endpoint, or moto in tests)."
    )
    connect_through: str | None = Field(
        default=None,
        description="`host:port` that reaches a restored instance instead of its endpoint "
        "(a tunnel or port forward when this process runs outside the VPC); unset: the "
        "endpoint RDS reports for the restored instance.",
    )
    wait_delay_seconds: int = Field(
        default=30, description="Seconds between two polls of the restored instance's status."
    )
    wait_max_attempts: int = Field(
        default=120, description="Polls before giving up on a restore (default: one hour)."
    )
    ephemeral_max_age_hours: float = Field(
        default=12,
        description="The janitor deletes instances tagged `minato:ephemeral` older than this.",
    )

    def client(self) -> Any:
        # The default session: credentials and event hooks configured process-wide apply.
        return boto3.client(
            "rds",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            # Standard mode retries throttling and transient errors with backoff.
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
        )

    def address(self, endpoint: dict[str, Any]) -> str:
        """`host:port` to connect to for an instance whose `Endpoint` RDS reported."""
        return self.connect_through or f"{endpoint['Address']}:{endpoint['Port']}"
