"""The ECS production instance (deploy/dagster.ecs.yaml) loads with PostgreSQL storage, and its
EcsRunLauncher sends the exact RunTask request for a shard run (sized by the shards file)
against moto's ECS and EC2 servers; an ECS throttling error is retried.

The launcher takes cluster and networking from the daemon's own task, found through ECS's task
metadata endpoint: that endpoint is the one fake here (only the ECS agent serves it)."""

import datetime as dt
import http.server
import json
import threading
from typing import ClassVar
from zoneinfo import ZoneInfo

import boto3
import botocore.awsrequest
import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.test_utils import create_run_for_test, in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_aws.ecs import EcsRunLauncher

from pipelines.schedules import daily_ingestion_schedule
from resources.settings import REPO_ROOT
from tests.aws import moto_server, recorded_requests
from tests.servers import dagster_postgres_env, postgres_database

pytestmark = pytest.mark.postgres

TASK_DEFINITION = "minato-code-location"


class _TaskMetadata(http.server.BaseHTTPRequestHandler):
    task: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.task if self.path == "/task" else {"Name": "daemon"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ecs(monkeypatch):
    """moto with a VPC (DNS hostnames on, as Fargate needs), a subnet, a security group, a
    cluster, the code location's task definition and the daemon's running task."""
    with moto_server() as endpoint, recorded_requests(monkeypatch, endpoint) as requests:
        ec2, client = boto3.client("ec2"), boto3.client("ecs")
        vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName="minato-runs", Description="Dagster run tasks", VpcId=vpc
        )["GroupId"]
        cluster = client.create_cluster(clusterName="minato")["cluster"]["clusterArn"]
        fargate = {"networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"]}
        code = client.register_task_definition(
            family=TASK_DEFINITION,
            cpu="1024",
            memory="4096",
            containerDefinitions=[
                {"name": "minato", "image": "minato:1", "cpu": 1024, "memory": 4096}
            ],
            **fargate,
        )["taskDefinition"]["taskDefinitionArn"]
        daemon_definition = client.register_task_definition(
            family="minato-daemon",
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": "daemon", "image": "minato:1", "memory": 1024}],
            **fargate,
        )["taskDefinition"]["taskDefinitionArn"]
        daemon = client.run_task(
            cluster="minato",
            taskDefinition=daemon_definition,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [subnet],
                    "securityGroups": [group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )["tasks"][0]["taskArn"]
        _TaskMetadata.task = {"Cluster": cluster, "TaskARN": daemon}
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TaskMetadata)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv(
            "ECS_CONTAINER_METADATA_URI_V4", f"http://127.0.0.1:{server.server_address[1]}"
        )
        requests.sent.clear()
        try:
            yield {"cluster": cluster, "subnet": subnet, "group": group, "code": code}, requests
        finally:
            server.shutdown()


@pytest.fixture
def ecs_instance(ecs, minato_env, tmp_path, monkeypatch):
    """deploy/dagster.ecs.yaml as $DAGSTER_HOME/dagster.yaml, on a fresh PostgreSQL database,
    with a shards file in which shard_02 is sized larger."""
    shards = yaml.safe_load((REPO_ROOT / "shards.yaml").read_text())
    shards["shards"][1]["size"] = {"cpu": 2048, "memory": 8192}
    (tmp_path / "shards.yaml").write_text(yaml.safe_dump(shards))
    monkeypatch.setenv("MINATO_SHARDS_FILE", str(tmp_path / "shards.yaml"))
    monkeypatch.setenv("MINATO_ECS_TASK_DEFINITION", TASK_DEFINITION)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.ecs.yaml").read_text())
    with postgres_database("minato_ecs") as database:
        for name, value in dagster_postgres_env(database).items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance


def test_the_ecs_instance_loads_with_queue_lanes_monitoring_and_retries(ecs_instance) -> None:
    instance = ecs_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert isinstance(instance.run_launcher, EcsRunLauncher)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == 32
    lanes = {
        limit["value"]: limit["limit"]
        for limit in queue.tag_concurrency_limits
        if limit["key"] == "minato/lane"
    }
    assert lanes == {"backfill": 4, "adhoc": 4}
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 600
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure


def _shard_run(instance, workspace, shard: str) -> dg.DagsterRun:
    """The run the daily schedule requests for `shard`, created as the daemon would."""
    tick = dt.datetime(2026, 11, 27, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    requests = daily_ingestion_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    request = next(r for r in requests if r.tags["minato/shard"] == shard)
    location = workspace.get_code_location(workspace.code_location_names[0])
    job = location.get_repository("__repository__").get_full_job("ingest_shards")
    return create_run_for_test(
        instance,
        job_name="ingest_shards",
        tags={**request.tags, "dagster/partition": str(request.partition_key)},
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
    )


@pytest.fixture
def workspace(ecs_instance):
    target = LoadableTargetOrigin(
        module_name="pipelines.definitions", attribute="defs", working_directory=str(REPO_ROOT)
    )
    with in_process_test_workspace(ecs_instance, target) as context:
        yield context


def test_a_large_shard_run_is_one_fargate_task_sized_by_the_shards_file(
    ecs, ecs_instance, workspace
) -> None:
    aws, requests = ecs
    run = _shard_run(ecs_instance, workspace, "shard_02")
    ecs_instance.launch_run(run.run_id, workspace)

    (run_task,) = requests.of("RunTask")
    command = run_task["overrides"]["containerOverrides"][0].pop("command")
    assert command[:3] == ["dagster", "api", "execute_run"]
    assert run.run_id in command[3]  # the serialized ExecuteRunArgs
    assert run_task.pop("clientToken")
    assert run_task == {
        "cluster": aws["cluster"],
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": [aws["subnet"]],
                "assignPublicIp": "DISABLED",
                "securityGroups": [aws["group"]],
            }
        },
        "taskDefinition": aws["code"],
        "overrides": {
            "containerOverrides": [{"name": "minato", "cpu": 2048, "memory": 8192}],
            "cpu": "2048",
            "memory": "8192",
        },
        "tags": [
            {"key": "dagster/run_id", "value": run.run_id},
            {"key": "dagster/job_name", "value": "ingest_shards"},
            # The schedule's run-queue lane reaches the task too.
            {"key": "minato/lane", "value": "core"},
            {"key": "minato/shard", "value": "shard_02"},
        ],
    }
    stored = ecs_instance.get_run_by_id(run.run_id)
    assert stored.tags["ecs/task_arn"].startswith("arn:aws:ecs:ap-northeast-1:123456789012:task/")


def test_a_shard_without_a_size_gets_the_launchers_default(ecs, ecs_instance, workspace) -> None:
    _, requests = ecs
    run = _shard_run(ecs_instance, workspace, "shard_01")
    assert "ecs/cpu" not in run.tags
    ecs_instance.launch_run(run.run_id, workspace)
    (run_task,) = requests.of("RunTask")
    overrides = run_task["overrides"]
    assert (overrides["cpu"], overrides["memory"]) == ("1024", "4096")


def test_an_ecs_throttling_error_is_retried(ecs, ecs_instance, workspace, monkeypatch) -> None:
    _, requests = ecs
    attempts: list[str] = []

    def throttle_once(**_: object):
        attempts.append("RunTask")
        if len(attempts) > 1:
            return None  # let the request through to moto
        response = botocore.awsrequest.AWSResponse(None, 400, {}, None)
        error = {"Code": "InvalidParameterException", "Message": "Throttling: Rate exceeded"}
        return response, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    launcher = ecs_instance.run_launcher
    launcher.ecs.meta.events.register("before-call.ecs.RunTask", throttle_once)
    run = _shard_run(ecs_instance, workspace, "shard_02")
    ecs_instance.launch_run(run.run_id, workspace)
    assert attempts == ["RunTask", "RunTask"]
    assert len(requests.of("RunTask")) == 1  # the throttled attempt never left the client
    assert ecs_instance.get_run_by_id(run.run_id).tags["ecs/task_arn"]
