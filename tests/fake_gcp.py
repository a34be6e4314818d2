"""An in-memory fake of the BigQuery dataset, Cloud Storage IAM and Analytics Hub APIs.

It keeps each resource with an ETag that changes on every write, refuses a write carrying a
stale ETag (as the APIs answer 412), and records every request in the APIs' REST shape, so
tests assert exactly what would be sent.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from resources.gcp_access import MissingResourceError, StaleEtagError


class FakeGcp:
    def __init__(self, project: str = "minato-test", dataset_prefix: str = "") -> None:
        # Callers name datasets unprefixed; the live resource (like this fake) adds the prefix.
        self.project, self.prefix = project, dataset_prefix
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
        path = f"/bigquery/v2/projects/{self.project}/datasets/{self.prefix}{dataset}"
        self.requests.append({"method": "GET", "path": path})
        if dataset not in self.datasets:
            raise MissingResourceError(f"404 dataset {dataset}")
        found = self.datasets[dataset]
        result = copy.deepcopy(found["access"]), found["etag"]
        self._after_read(dataset)
        return result

    def set_dataset_access(self, dataset: str, access: list[dict], etag: str) -> None:
        path = f"/bigquery/v2/projects/{self.project}/datasets/{self.prefix}{dataset}"
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
        if bucket not in self.buckets:
            raise MissingResourceError(f"404 bucket {bucket}")
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


@contextlib.contextmanager
def serve(fake: FakeGcp) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """`fake` behind HTTP on a free port, for the real google-cloud clients: yields the endpoint
    and the list of requests as they arrived (method, path, If-Match, JSON body)."""
    received: list[dict[str, Any]] = []
    dataset_path = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)$")
    bucket_path = re.compile(r"^/storage/v1/b/([^/]+)/iam$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            received.append(
                {
                    "method": self.command,
                    "path": path,
                    "if_match": self.headers.get("If-Match"),
                    "body": body,
                }
            )
            try:
                if match := dataset_path.match(path):
                    project, dataset_id = match.groups()
                    name = dataset_id.removeprefix(fake.prefix)
                    if self.command == "PATCH":
                        fake.set_dataset_access(name, body["access"], self.headers["If-Match"])
                    access, etag = fake.dataset_access(name)
                    reference = {"projectId": project, "datasetId": dataset_id}
                    self._reply(
                        200, {"datasetReference": reference, "access": access, "etag": etag}
                    )
                elif match := bucket_path.match(path):
                    bucket = match.group(1)
                    if self.command == "PUT":
                        # An empty policy arrives without "bindings" (the client omits the key).
                        bindings = body.get("bindings", [])
                        fake.set_bucket_policy(bucket, bindings, body.get("etag", ""))
                    bindings, etag = fake.bucket_policy(bucket)
                    policy = {"kind": "storage#policy", "version": 3, "etag": etag}
                    self._reply(200, {**policy, "bindings": bindings})
                else:
                    self._reply(404, {"error": {"code": 404, "message": f"no {path}"}})
            except StaleEtagError as exc:
                self._reply(412, {"error": {"code": 412, "message": str(exc)}})
            except MissingResourceError as exc:
                self._reply(404, {"error": {"code": 404, "message": str(exc)}})

        do_GET = do_PATCH = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeAnalyticsHub:
    """Data exchanges, listings and listing IAM policies (REST paths of analyticshub v1)."""

    def __init__(self) -> None:
        self.exchanges: dict[str, dict] = {}
        self.listings: dict[str, dict] = {}
        self.policies: dict[str, dict] = {}
        self.requests: list[dict[str, Any]] = []
        self._etags = itertools.count(1)
        self.after_policy_read: Callable[[str], None] | None = None

    def _etag(self) -> str:
        return f"BwY{next(self._etags)}"

    def get_data_exchange(self, name: str) -> dict | None:
        self.requests.append({"method": "GET", "path": f"/v1/{name}"})
        return copy.deepcopy(self.exchanges.get(name))

    def create_data_exchange(self, parent: str, data_exchange_id: str, body: dict) -> None:
        path = f"/v1/{parent}/dataExchanges?dataExchangeId={data_exchange_id}"
        self.requests.append({"method": "POST", "path": path, "body": copy.deepcopy(body)})
        self.exchanges[f"{parent}/dataExchanges/{data_exchange_id}"] = copy.deepcopy(body)

    def get_listing(self, name: str) -> dict | None:
        self.requests.append({"method": "GET", "path": f"/v1/{name}"})
        return copy.deepcopy(self.listings.get(name))

    def create_listing(self, parent: str, listing_id: str, body: dict) -> None:
        if parent not in self.exchanges:
            raise KeyError(f"404 data exchange {parent}")
        path = f"/v1/{parent}/listings?listingId={listing_id}"
        self.requests.append({"method": "POST", "path": path, "body": copy.deepcopy(body)})
        name = f"{parent}/listings/{listing_id}"
        self.listings[name] = copy.deepcopy(body)
        self.policies[name] = {"bindings": [], "etag": self._etag()}

    def update_listing(self, name: str, body: dict, update_mask: list[str]) -> None:
        path = f"/v1/{name}?updateMask={','.join(update_mask)}"
        self.requests.append({"method": "PATCH", "path": path, "body": copy.deepcopy(body)})
        self.listings[name].update(copy.deepcopy({k: body[k] for k in update_mask}))

    def get_iam_policy(self, resource: str) -> dict:
        self.requests.append({"method": "POST", "path": f"/v1/{resource}:getIamPolicy"})
        policy = copy.deepcopy(self.policies[resource])
        if self.after_policy_read is not None:
            hook, self.after_policy_read = self.after_policy_read, None
            hook(resource)
        return policy

    def set_iam_policy(self, resource: str, policy: dict) -> None:
        path = f"/v1/{resource}:setIamPolicy"
        self.requests.append({"method": "POST", "path": path, "body": {"policy": policy}})
        if policy.get("etag") != self.policies[resource]["etag"]:
            raise StaleEtagError(f"409 Aborted: {resource} policy changed")
        self.policies[resource] = {**copy.deepcopy(policy), "etag": self._etag()}

    def writes(self) -> list[dict[str, Any]]:
        return [
            r for r in self.requests if r["method"] != "GET" and "getIamPolicy" not in r["path"]
        ]


@contextlib.contextmanager
def serve_hub(fake: FakeAnalyticsHub) -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    """`fake` as the Analytics Hub gRPC service on a free port, for the real client: yields
    host:port and the calls as they arrived (method, request as a dict)."""
    import base64
    from concurrent import futures

    import grpc
    from google.cloud import bigquery_analyticshub_v1 as hub
    from google.iam.v1 import iam_policy_pb2, policy_pb2
    from google.protobuf import json_format

    from resources.analytics_hub import as_dict

    received: list[tuple[str, dict]] = []

    def found(value: dict | None, kind: Any, context: grpc.ServicerContext) -> Any:
        if value is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "not found")
        return kind(value)

    def policy(value: dict) -> Any:
        return json_format.ParseDict(
            {**value, "etag": base64.b64encode(value["etag"].encode()).decode()},
            policy_pb2.Policy(),
        )

    def set_policy(request: Any, context: grpc.ServicerContext) -> Any:
        written = as_dict(request.policy)
        written["etag"] = request.policy.etag.decode()
        try:
            fake.set_iam_policy(request.resource, written)
        except StaleEtagError as exc:
            context.abort(grpc.StatusCode.ABORTED, str(exc))
        return policy(fake.policies[request.resource])

    calls: dict[str, tuple[Callable, Any, Any]] = {
        "GetDataExchange": (
            lambda r, c: found(fake.get_data_exchange(r.name), hub.DataExchange, c),
            hub.GetDataExchangeRequest,
            hub.DataExchange,
        ),
        "CreateDataExchange": (
            lambda r, c: (
                fake.create_data_exchange(r.parent, r.data_exchange_id, as_dict(r.data_exchange)),
                r.data_exchange,
            )[1],
            hub.CreateDataExchangeRequest,
            hub.DataExchange,
        ),
        "GetListing": (
            lambda r, c: found(fake.get_listing(r.name), hub.Listing, c),
            hub.GetListingRequest,
            hub.Listing,
        ),
        "CreateListing": (
            lambda r, c: (
                fake.create_listing(r.parent, r.listing_id, as_dict(r.listing)),
                r.listing,
            )[1],
            hub.CreateListingRequest,
            hub.Listing,
        ),
        "UpdateListing": (
            lambda r, c: (
                fake.update_listing(
                    r.listing.name,
                    {k: v for k, v in as_dict(r.listing).items() if k != "name"},
                    list(r.update_mask.paths),
                ),
                r.listing,
            )[1],
            hub.UpdateListingRequest,
            hub.Listing,
        ),
        "GetIamPolicy": (
            lambda r, c: policy(fake.get_iam_policy(r.resource)),
            iam_policy_pb2.GetIamPolicyRequest,
            policy_pb2.Policy,
        ),
        "SetIamPolicy": (set_policy, iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
    }

    def handler(name: str, call: Callable, request_type: Any, response_type: Any) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            received.append((name, as_dict(request)))
            return call(request, context)

        serialize = getattr(response_type, "serialize", None) or (lambda m: m.SerializeToString())
        deserialize = getattr(request_type, "deserialize", None) or request_type.FromString
        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=deserialize, response_serializer=serialize
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "google.cloud.bigquery.analyticshub.v1.AnalyticsHubService",
                {name: handler(name, *spec) for name, spec in calls.items()},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        server.stop(grace=None)
