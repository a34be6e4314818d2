"""The landing zone where SaaS exports are dropped: a local folder by default, S3 in production."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from resources import settings


@dataclass(frozen=True, order=True)
class LandedFile:
    """Ordered by (modified, key): the landing sensor's cursor is the last one it handled."""

    modified: float  # seconds since the epoch, UTC
    key: str  # path relative to the landing root, with '/' separators


class LandingStore(dg.ConfigurableResource, ABC):
    @abstractmethod
    def list_files(self, prefix: str) -> list[LandedFile]:
        """Every file under `prefix`, sorted by (modified, key)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...


class LocalLandingStore(LandingStore):
    root: str | None = settings.path_field(
        "Folder that exports are dropped into", "MINATO_LANDING_DIR"
    )

    @property
    def root_dir(self) -> Path:
        return settings.setting_path(self.root, "MINATO_LANDING_DIR")

    def list_files(self, prefix: str) -> list[LandedFile]:
        base = self.root_dir
        folder = base / prefix
        if not folder.exists():
            return []
        return sorted(
            LandedFile(path.stat().st_mtime, path.relative_to(base).as_posix())
            for path in folder.rglob("*")
            # Writers rename *.tmp into place when done; half-written files are not listed.
            if path.is_file() and path.suffix != ".tmp"
        )

    def read_bytes(self, key: str) -> bytes:
        base = self.root_dir.resolve()
        path = (base / key).resolve()
        if base not in path.parents:
            raise ValueError(f"landing key {key!r} escapes the landing folder")
        return path.read_bytes()


class S3LandingStore(LandingStore):
    s3: S3Resource
    bucket: str = Field(description="Bucket that exports are dropped into.")
    prefix: str = Field(default="", description="Key prefix of the landing zone in the bucket.")

    def _full_key(self, key: str) -> str:
        return f"{self.prefix.rstrip('/')}/{key}" if self.prefix else key

    def list_files(self, prefix: str) -> list[LandedFile]:
        client = self.s3.get_client()
        root = f"{self.prefix.rstrip('/')}/" if self.prefix else ""
        files = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        ):
            for obj in page.get("Contents", []):
                files.append(LandedFile(obj["LastModified"].timestamp(), obj["Key"][len(root) :]))
        return sorted(files)

    def read_bytes(self, key: str) -> bytes:
        client = self.s3.get_client()
        try:
            response = client.get_object(Bucket=self.bucket, Key=self._full_key(key))
        except client.exceptions.NoSuchKey as exc:
            # The same error as the local store, naming the object, for "not landed yet".
            raise FileNotFoundError(f"s3://{self.bucket}/{self._full_key(key)}") from exc
        return response["Body"].read()
