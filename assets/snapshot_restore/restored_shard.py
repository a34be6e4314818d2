"""A restored instance as the one shard the shard reader reads: `Shards` for one spec."""

from __future__ import annotations

import contextlib

from resources.shards import ShardConnection, ShardSpec, connect_spec


class RestoredShard:
    def __init__(self, spec: ShardSpec) -> None:
        self._spec = spec

    def spec(self, name: str) -> ShardSpec:
        return self._spec

    def connect(self, name: str) -> contextlib.AbstractContextManager[ShardConnection]:
        return connect_spec(self._spec)
