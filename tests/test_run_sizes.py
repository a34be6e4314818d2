"""A shard's `size` in the shards file: Fargate's valid sizes only, errors with file and line,
and the run tags both launchers read."""

import json

import pytest

from pipelines.run_sizes import run_size_tags
from resources.shards import RunSize, ShardConfigError, load_shard_specs


def _shards(tmp_path, size: str):
    path = tmp_path / "shards.yaml"
    path.write_text(
        f"shards:\n  - name: shard_01\n    url: sqlite:///a\n    timezone: UTC\n    size: {size}\n"
    )
    return path


def test_a_size_becomes_ecs_and_kubernetes_run_tags(tmp_path) -> None:
    (spec,) = load_shard_specs(_shards(tmp_path, "{cpu: 4096, memory: 16384}"))
    tags = run_size_tags(spec.size)
    assert tags["ecs/cpu"] == "4096" and tags["ecs/memory"] == "16384"
    assert json.loads(tags["dagster-k8s/config"]) == {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4000m", "memory": "16384Mi"},
                "limits": {"memory": "16384Mi"},
            }
        }
    }
    assert run_size_tags(None) == {}


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (
            "{cpu: 3000, memory: 8192}",
            "shards.yaml:5: shard 'shard_01': key 'size': cpu 3000 is not a Fargate size: "
            "[256, 512, 1024, 2048, 4096, 8192, 16384]",
        ),
        (
            "{cpu: 1024, memory: 16384}",
            "shards.yaml:5: shard 'shard_01': key 'size': Fargate runs cpu 1024 with "
            "2048..8192 MiB in steps of 1024, not 16384",
        ),
        ("{cpu: 1024}", "shards.yaml:5: shard 'shard_01': key 'size.memory': missing"),
    ],
)
def test_a_size_fargate_cannot_run_is_refused_with_file_and_line(tmp_path, size, message) -> None:
    with pytest.raises(ShardConfigError) as error:
        load_shard_specs(_shards(tmp_path, size))
    assert str(error.value) == f"{tmp_path}/{message}"
    assert RunSize(cpu=256, memory=512).memory == 512
