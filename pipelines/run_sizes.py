"""Per-shard run sizes as the run launchers read them from run tags.

`ecs/cpu` and `ecs/memory` size the ECS task (dagster-aws' EcsRunLauncher);
`dagster-k8s/config` sizes the run pod (dagster-k8s' K8sRunLauncher). A shard without a
`size` in the shards file gets no tag, so the launcher's own default applies.
"""

from __future__ import annotations

import json

from resources import settings
from resources.shards import RunSize, load_shard_specs


def run_size_tags(size: RunSize | None) -> dict[str, str]:
    if size is None:
        return {}
    # 1024 CPU units are one vCPU, which Kubernetes counts as 1000 millicores.
    millicores, memory = size.cpu * 1000 // 1024, f"{size.memory}Mi"
    pod = {"requests": {"cpu": f"{millicores}m", "memory": memory}, "limits": {"memory": memory}}
    return {
        "ecs/cpu": str(size.cpu),
        "ecs/memory": str(size.memory),
        "dagster-k8s/config": json.dumps({"container_config": {"resources": pod}}),
    }


def run_size_tags_by_shard() -> dict[str, dict[str, str]]:
    """Each shard's run size tags, from the shards file (names only: no connection)."""
    return {
        spec.name: run_size_tags(spec.size) for spec in load_shard_specs(settings.shards_file())
    }
