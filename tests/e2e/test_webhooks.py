"""Events and webhooks with real clients: a skopeo push reaches a receiver as a signed
CloudEvent, on the embedded backend and through SQS on LocalStack; through SQS a receiver
that is down, then up, gets each event once, and one down for good ends in the dead-letter
queue with every attempt logged; a process killed between a manifest commit and the
event's publication still delivers the event after a restart (the outbox)."""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from awsstack import AwsRegistry, aws_env, require_localstack, stop_all
from hooks import FreshQueues, Receiver, check_signature, create_webhook
from ocilayout import Layout, sample_layers

SECRET = "e2e-webhook-secret"
# Scan on push off: the scanner's SBOM pushes would be events too (tests count events).
HOOK_ARGS = ["--outbound-allow", "127.0.0.0/8", "--webhook-retry-base-secs", "1", "--scan-on-push", "false"]
HOOK_ENV = {"REGISTRY_OUTBOUND_ALLOW": "127.0.0.0/8", "REGISTRY_WEBHOOK_RETRY_BASE_SECS": "1",
            "REGISTRY_SCAN_ON_PUSH": "false"}


@pytest.fixture
def receivers():
    made = []

    def make(fail_first: int = 0) -> Receiver:
        made.append(Receiver(fail_first))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def queues():
    made = []

    def make(max_receive_count: int = 3) -> FreshQueues:
        made.append(FreshQueues(max_receive_count))
        return made[-1]

    yield make
    for q in made:
        q.close()


@pytest.fixture
def aws_procs():
    procs = []
    yield procs
    stop_all(procs)


def image(tmp_path, seed: str):
    layout = Layout(tmp_path / f"src-{seed}")
    img = layout.add_image(sample_layers(seed))
    layout.tag(img.descriptor, "v1")
    return layout, img


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_pushed_event(hit, img, repo: str) -> None:
    check_signature(hit, SECRET)
    assert hit.headers["content-type"] == "application/cloudevents+json"
    body = hit.json()
    assert body["specversion"] == "1.0"
    assert body["type"] == "dev.registry.manifest.pushed"
    assert body["id"] == hit.headers["webhook-id"]
    assert body["data"]["repository"] == repo
    assert body["data"]["digest"] == img.digest
    assert body["data"]["tags"] == ["v1"]


def push_and_receive(skopeo, registry, rx: Receiver, tmp_path, backend: str) -> None:
    project = f"hooks{uuid.uuid4().hex[:8]}"
    create_webhook(registry, project, {"name": "ce", "targetUrl": f"{rx.url}/ce", "secret": SECRET,
                                       "eventTypes": ["manifest.pushed", "blob.uploaded"]})
    layout, img = image(tmp_path, backend)
    repo = f"{project}/app"
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/{repo}:v1")
    assert rx.wait(lambda r: r.delivered("manifest.pushed")), rx.hits
    hit = rx.delivered("manifest.pushed")[0]
    assert_pushed_event(hit, img, repo)
    latency_ms = (hit.at - hit.json()["data"]["timeMs"] / 1000) * 1000
    print(f"{backend}: manifest commit -> signed CloudEvent at the receiver in {latency_ms:.0f} ms")
    # The config and both layers, each once.
    assert rx.wait(lambda r: len(r.delivered("blob.uploaded")) == 3), rx.hits
    digests = sorted(h.json()["data"]["digest"] for h in rx.delivered("blob.uploaded"))
    assert digests == sorted([img.config_digest, *img.layer_digests])


def test_skopeo_push_sends_a_signed_cloudevent_embedded(registry_factory, skopeo, receivers, tmp_path):
    registry = registry_factory(extra_args=HOOK_ARGS).start()
    push_and_receive(skopeo, registry, receivers(), tmp_path, "embedded")


def test_skopeo_push_sends_a_signed_cloudevent_through_sqs(registry_bin, skopeo, receivers, queues,
                                                             tmp_path, aws_procs):
    require_localstack()
    env = dict(aws_env(), **HOOK_ENV, **queues().env())
    registry = AwsRegistry(registry_bin, tmp_path / "aws-registry.log", env)
    aws_procs.append(registry.start())
    push_and_receive(skopeo, registry, receivers(), tmp_path, "aws")


def test_through_sqs_a_receiver_down_then_up_gets_each_event_once_and_one_down_for_good_dead_letters(
        registry_bin, skopeo, receivers, queues, tmp_path, aws_procs):
    require_localstack()
    q = queues(max_receive_count=3)
    registry = AwsRegistry(registry_bin, tmp_path / "aws-registry.log", dict(aws_env(), **HOOK_ENV, **q.env()))
    aws_procs.append(registry.start())
    project = f"hooks{uuid.uuid4().hex[:8]}"
    flaky = receivers(fail_first=2)
    create_webhook(registry, project, {"name": "flaky", "targetUrl": f"{flaky.url}/hook",
                                       "secret": SECRET, "eventTypes": ["manifest.pushed"]})
    dead = create_webhook(registry, project, {"name": "dead", "eventTypes": ["manifest.pushed"],
                                              "targetUrl": f"http://127.0.0.1:{closed_port()}/hook"})
    layout, img = image(tmp_path, "down-up")
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/{project}/app:v1")

    assert flaky.wait(lambda r: r.delivered("manifest.pushed"), timeout=60), flaky.hits
    assert [h.status for h in flaky.hits] == [503, 503, 200]
    assert len({h.headers["webhook-id"] for h in flaky.hits}) == 1, "one event, retried"
    assert_pushed_event(flaky.hits[-1], img, f"{project}/app")
    # Backoff through SQS visibility: ~1 s, then ~2 s.
    assert flaky.hits[1].at - flaky.hits[0].at >= 0.9
    assert flaky.hits[2].at - flaky.hits[1].at >= 1.9

    def dead_lettered():
        return [j for j in q.dead_letters() if j.get("kind") == "webhook.deliver"
                and j["payload"]["policyId"] == dead["id"]]
    assert flaky.wait(lambda _: dead_lettered(), timeout=60), "no dead letter"
    log = registry.request("GET", f"/api/v1/projects/{project}/webhooks/{dead['id']}/deliveries").json()
    attempts = log["deliveries"][0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "gaveUp"], attempts
    assert log["deliveries"][0]["status"] == "gaveUp"
    # The flaky receiver saw no duplicate: the dead policy's retries are its own.
    assert len(flaky.delivered("manifest.pushed")) == 1


@pytest.mark.parametrize("backend", ["embedded", "aws"])
def test_killed_after_the_manifest_commit_the_event_is_delivered_after_restart(
        backend, registry_factory, registry_bin, skopeo, receivers, queues, tmp_path, aws_procs):
    rx = receivers()
    fault = {"REGISTRY_FAULT_ABORT_BEFORE_PUBLISH": "manifest.pushed", "REGISTRY_OUTBOX_GRACE_SECS": "1"}
    if backend == "aws":
        require_localstack()
        env = dict(aws_env(), **HOOK_ENV, **queues().env())
        first = AwsRegistry(registry_bin, tmp_path / "aws-1.log", dict(env, **fault))
        aws_procs.append(first.start())
    else:
        first = registry_factory(extra_args=[*HOOK_ARGS, "--fault-abort-before-publish", "manifest.pushed",
                                             "--outbox-grace-secs", "1"]).start()
    project = f"crash{uuid.uuid4().hex[:8]}"
    create_webhook(first, project, {"name": "c", "targetUrl": f"{rx.url}/hook", "secret": SECRET,
                                    "eventTypes": ["manifest.pushed"]})
    layout, img = image(tmp_path, f"crash-{backend}")
    repo = f"{project}/app"
    res = skopeo.run("copy", "--dest-tls-verify=false", f"oci:{layout.root}:v1",
                     f"docker://{first.host}/{repo}:v1", check=False)
    assert res.returncode != 0, "the registry died during the manifest PUT"
    first.proc.wait(timeout=30)
    assert first.proc.returncode == -6, f"aborted (SIGABRT), got {first.proc.returncode}"
    assert rx.hits == [], "nothing was published before the crash"

    if backend == "aws":
        second = AwsRegistry(registry_bin, tmp_path / "aws-2.log", dict(env, REGISTRY_OUTBOX_GRACE_SECS="1"))
        aws_procs.append(second.start())
    else:
        second = registry_factory(data_dir=first.data_dir,
                                  extra_args=[*HOOK_ARGS, "--outbox-grace-secs", "1"]).start()
    # The manifest committed before the crash...
    digest = second.request("HEAD", f"/v2/{repo}/manifests/v1").headers.get("docker-content-digest")
    assert digest == img.digest
    # ...and its event, left in the outbox, is published by the sweep and delivered.
    assert rx.wait(lambda r: r.delivered("manifest.pushed"), timeout=60), rx.hits
    assert_pushed_event(rx.delivered("manifest.pushed")[0], img, repo)
    assert len(rx.delivered("manifest.pushed")) == 1
