#!/usr/bin/env python3
"""Webhook latency benchmark: pushes PUSHES small images with skopeo into the release
`registry` binary and measures, for each, the time from the manifest commit (the event's
`timeMs`) to the signed CloudEvent's arrival at a receiver on 127.0.0.1, and from skopeo's
exit to the arrival; on the embedded backend, and through SQS on LocalStack when
`AWS_ENDPOINT_URL` is set (`source localstack/env`). Prints min / median / p90 / max.

Run: tests/.venv/bin/python tests/bench/webhook-latency.py
Env: PUSHES (default 10), REGISTRY_BIN (default target/release/registry, built if missing).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from awsstack import AwsRegistry, aws_env  # noqa: E402
from conftest import RegistryProcess, Skopeo  # noqa: E402
from hooks import FreshQueues, Receiver, check_signature, create_webhook  # noqa: E402
from ocilayout import Layout, sample_layers  # noqa: E402

SECRET = "bench-secret"
PUSHES = int(os.environ.get("PUSHES", "10"))


def binary() -> Path:
    if os.environ.get("REGISTRY_BIN"):
        return Path(os.environ["REGISTRY_BIN"])
    subprocess.run(["cargo", "build", "--release", "-p", "registry-local"], cwd=ROOT, check=True)
    return ROOT / "target" / "release" / "registry"


def figures(label: str, values_ms: list[float]) -> str:
    v = sorted(values_ms)
    p90 = v[max(0, int(round(0.9 * len(v))) - 1)]
    return (f"{label}: n={len(v)} min={v[0]:.0f} ms median={statistics.median(v):.0f} ms "
            f"p90={p90:.0f} ms max={v[-1]:.0f} ms")


def run(name: str, registry, tmp: Path) -> None:
    rx = Receiver()
    skopeo = Skopeo(tmp / "skopeo")
    project = f"bench{uuid.uuid4().hex[:8]}"
    create_webhook(registry, project, {"name": "bench", "targetUrl": f"{rx.url}/hook",
                                       "secret": SECRET, "eventTypes": ["manifest.pushed"]})
    from_commit, from_exit = [], []
    for i in range(PUSHES):
        layout = Layout(tmp / f"{name}-{i}")
        img = layout.add_image(sample_layers(f"{name}-{i}-{uuid.uuid4().hex}"))
        layout.tag(img.descriptor, "v1")
        before = len(rx.delivered("manifest.pushed"))
        skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/{project}/app{i}:v1")
        exited = time.time()
        if not rx.wait(lambda r: len(r.delivered("manifest.pushed")) > before, timeout=30):
            raise SystemExit(f"{name}: no event for push {i}")
        hit = rx.delivered("manifest.pushed")[-1]
        check_signature(hit, SECRET)
        assert hit.json()["data"]["digest"] == img.digest
        from_commit.append((hit.at - hit.json()["data"]["timeMs"] / 1000) * 1000)
        from_exit.append((hit.at - exited) * 1000)
    rx.close()
    print(figures(f"{name}: manifest commit -> event at receiver", from_commit))
    print(figures(f"{name}: skopeo exit -> event at receiver (negative: before skopeo exited)",
                  from_exit))


def main() -> None:
    bin_path = binary()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "data").mkdir()
        reg = RegistryProcess(bin_path, tmp / "data", tmp / "embedded.log",
                              ["--outbound-allow", "127.0.0.0/8", "--scan-on-push", "false"])
        reg.start()
        try:
            run("embedded", reg, tmp)
        finally:
            reg.stop()
        if os.environ.get("AWS_ENDPOINT_URL"):
            queues = FreshQueues(max_receive_count=3)
            env = dict(aws_env(), REGISTRY_OUTBOUND_ALLOW="127.0.0.0/8", REGISTRY_LOG="warn",
                       REGISTRY_SCAN_ON_PUSH="false", **queues.env())
            aws = AwsRegistry(bin_path, tmp / "aws.log", env)
            aws.start()
            try:
                run("aws (SQS on LocalStack)", aws, tmp)
            finally:
                aws.stop()
                queues.close()
        else:
            print("aws: skipped (AWS_ENDPOINT_URL unset: `source localstack/env`)")


if __name__ == "__main__":
    main()
