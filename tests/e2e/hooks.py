"""Webhook helpers for the end-to-end tests: a receiver (an HTTP server in the test process
that records every request and can fail on purpose), the Standard Webhooks signature check,
the management calls that create a policy, and fresh SQS queues on LocalStack (created over
the SQS JSON protocol, so no AWS SDK is needed here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Hit:
    path: str
    headers: dict  # lower-cased names
    body: bytes
    status: int
    at: float  # time.time() on arrival

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """POST target on 127.0.0.1; answers 503 to the first `fail_first` requests, then 200."""

    fail_first: int = 0
    hits: list = field(default_factory=list)

    def __post_init__(self):
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    status = 503 if outer.fail_first > 0 else 200
                    outer.fail_first = max(0, outer.fail_first - 1)
                    outer.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()},
                                          body, status, time.time()))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def delivered(self, kind: str) -> list:
        return [h for h in self.hits if h.status == 200 and h.headers.get("x-registry-event") == kind]

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False


def check_signature(hit: Hit, secret: str) -> None:
    """Asserts the Standard Webhooks signature: v1,base64(HMAC-SHA256(secret, id.ts.body))."""
    msg_id, ts = hit.headers["webhook-id"], hit.headers["webhook-timestamp"]
    mac = hmac.new(secret.encode(), f"{msg_id}.{ts}.".encode() + hit.body, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac.digest()).decode()
    assert hmac.compare_digest(hit.headers["webhook-signature"], expected), hit.headers
    assert abs(int(ts) - time.time()) < 300, "stale timestamp"


def create_webhook(registry, project: str, body: dict, auth: str | None = None) -> dict:
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = auth
    res = registry.request("POST", f"/api/v1/projects/{project}/webhooks",
                           headers=headers, data=json.dumps(body).encode())
    assert res.status == 201, (res.status, res.body)
    return res.json()


# ---- SQS on LocalStack ------------------------------------------------------------------

def _sqs(action: str, body: dict) -> dict:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    req = urllib.request.Request(
        endpoint + "/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0",
                 # LocalStack takes the region from the credential scope; it checks no signature.
                 "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{region}/sqs/aws4_request, "
                                  "SignedHeaders=host, Signature=0"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read() or b"{}")


class FreshQueues:
    """A queue (`kind`: webhook or scan) and its dead-letter queue, only this test's,
    deleted at `close`."""

    def __init__(self, max_receive_count: int, visibility: int = 30, kind: str = "webhook"):
        self.kind = kind
        name = f"e2e-{kind}-{uuid.uuid4().hex[:10]}"
        self.dlq_url = _sqs("CreateQueue", {"QueueName": f"{name}-dlq"})["QueueUrl"]
        arn = _sqs("GetQueueAttributes", {"QueueUrl": self.dlq_url, "AttributeNames": ["QueueArn"]})
        redrive = json.dumps({"deadLetterTargetArn": arn["Attributes"]["QueueArn"],
                              "maxReceiveCount": str(max_receive_count)})
        self.url = _sqs("CreateQueue", {"QueueName": name, "Attributes": {
            "VisibilityTimeout": str(visibility), "RedrivePolicy": redrive}})["QueueUrl"]
        self.max_receive_count = max_receive_count

    def env(self) -> dict:
        k = self.kind.upper()
        return {f"REGISTRY_{k}_QUEUE_URL": self.url, f"REGISTRY_{k}_DLQ_URL": self.dlq_url,
                f"REGISTRY_{k}_MAX_RECEIVES": str(self.max_receive_count)}

    def dead_letters(self) -> list:
        res = _sqs("ReceiveMessage", {"QueueUrl": self.dlq_url, "MaxNumberOfMessages": 10,
                                      "VisibilityTimeout": 0, "WaitTimeSeconds": 0})
        return [json.loads(m["Body"]) for m in res.get("Messages", [])]

    def close(self):
        for url in (self.url, self.dlq_url):
            try:
                _sqs("DeleteQueue", {"QueueUrl": url})
            except OSError:
                pass
