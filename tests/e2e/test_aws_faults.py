"""Fault injection on the AWS backend: LocalStack stopped in the middle of a push through
the Lambda harness, then restarted. The push fails with a clear error (no hang), no half
blob is visible, and a retry succeeds. Stops the shared emulator, so it runs on its own
(`-m faults`), after every other test."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from awsstack import LambdaHarness, aws_env, require_localstack, stop_all, wait_until
from conftest import REPO_ROOT
from ocilayout import Layout, read_blob, resolve, sample_layers

pytestmark = pytest.mark.faults


def localstack(cmd: str) -> None:
    res = subprocess.run([str(REPO_ROOT / "localstack" / cmd)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"localstack/{cmd} failed:\n{res.stdout}\n{res.stderr}"


def test_localstack_stopped_mid_push_then_restarted(skopeo, tmp_path):
    require_localstack()
    harness = LambdaHarness(tmp_path / "harness.log", aws_env()).start()
    try:
        layout = Layout(tmp_path / "src")
        big = os.urandom(120 * 1024 * 1024)
        img = layout.add_image(sample_layers("faults") + [{"big.bin": big}])
        layout.tag(img.descriptor, "v1")
        repo = f"e2e/faults-{uuid.uuid4().hex[:8]}"
        dest = f"docker://{harness.host}/{repo}:v1"

        err_path = tmp_path / "skopeo-first.err"
        with open(err_path, "w") as err:
            cmd = ["skopeo", "--debug", "--policy", str(skopeo.policy), "copy",
                   "--dest-tls-verify=false", f"oci:{layout.root}:v1", dest]
            push = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=skopeo.env)
            # Wait until layers are being uploaded, then pull the emulator from under it.
            assert wait_until(lambda: "PATCH" in err_path.read_text(), timeout=60), \
                "skopeo never started uploading"
            localstack("stop")
            try:
                rc = push.wait(timeout=240)
            except subprocess.TimeoutExpired:
                push.kill()
                pytest.fail("the push hung after the storage backend went away")
        first = err_path.read_text()
        assert rc != 0, "the push cannot succeed with the storage backend gone"
        assert "500" in first or "storage backend failed" in first or "connection" in first.lower(), \
            first[-3000:]

        localstack("start")
        # Nothing half-written is visible: the big layer is unknown in the repository.
        big_digest = img.layer_digests[-1]
        assert harness.request("HEAD", f"/v2/{repo}/blobs/{big_digest}").status == 404

        # The retry succeeds and the image reads back byte for byte.
        skopeo.copy(f"oci:{layout.root}:v1", dest)
        dst = tmp_path / "pulled"
        skopeo.copy(dest, f"oci:{dst}:v1")
        assert resolve(dst, "v1")["digest"] == img.digest
        for digest, data in zip(img.layer_digests, img.layers):
            assert read_blob(dst, digest) == data
    finally:
        stop_all([harness])
        # Leave the emulator running for whoever comes next.
        if not wait_until(lambda: subprocess.run(
                ["curl", "-sf", os.environ["AWS_ENDPOINT_URL"] + "/_localstack/health"],
                capture_output=True).returncode == 0, timeout=1):
            localstack("start")
