"""End-to-end on the AWS backend (S3, DynamoDB, SQS on LocalStack): skopeo pushes and pulls
through the local binary, and through the API function run as Lambda runs it (6 MB payload
limits) with large layers going to the upload endpoint; blob pulls follow 307s to S3."""

from __future__ import annotations

import os
import uuid

import pytest

from awsstack import AwsRegistry, LambdaHarness, aws_env, require_localstack, stop_all
from ocilayout import OCI_MANIFEST, Layout, read_blob, resolve, sample_layers

LARGE_LAYER = 50 * 1024 * 1024


@pytest.fixture
def aws_procs():
    procs = []
    yield procs
    stop_all(procs)


def roundtrip(skopeo, layout: Layout, img, host: str, repo: str, tmp_path) -> None:
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{host}/{repo}:v1")
    dst = tmp_path / "pulled"
    skopeo.copy(f"docker://{host}/{repo}:v1", f"oci:{dst}:v1")
    assert resolve(dst, "v1")["digest"] == img.digest
    assert read_blob(dst, img.digest) == img.manifest
    assert read_blob(dst, img.config_digest) == img.config
    for digest, data in zip(img.layer_digests, img.layers):
        assert read_blob(dst, digest) == data, f"layer {digest} differs after the round trip"


def test_local_binary_on_aws_backend_round_trips_with_redirects(registry_bin, skopeo, tmp_path, aws_procs):
    require_localstack()
    reg = AwsRegistry(registry_bin, tmp_path / "aws-registry.log", aws_env())
    aws_procs.append(reg.start())
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("aws-local"))
    layout.tag(img.descriptor, "v1")
    # The DynamoDB table outlives runs (S3 prefixes do not): a fresh repository per run.
    repo = f"e2e/aws-local-{uuid.uuid4().hex[:8]}"
    roundtrip(skopeo, layout, img, reg.host, repo, tmp_path)

    # A blob GET is a redirect to a presigned S3 URL on the emulator.
    res = reg.request("GET", f"/v2/{repo}/blobs/{img.layer_digests[0]}")
    assert res.status == 307
    assert res.headers["location"].startswith(os.environ["AWS_ENDPOINT_URL"])
    assert "X-Amz-Signature=" in res.headers["location"]
    tags = reg.request("GET", f"/v2/{repo}/tags/list").json()
    assert tags["tags"] == ["v1"]


def test_lambda_function_with_upload_endpoint_takes_a_large_layer(skopeo, tmp_path, aws_procs):
    require_localstack()
    harness = LambdaHarness(tmp_path / "harness.log", aws_env())
    aws_procs.append(harness.start())
    layout = Layout(tmp_path / "src")
    layers = sample_layers("lambda") + [{"big.bin": os.urandom(LARGE_LAYER)}]
    img = layout.add_image(layers)
    assert max(len(l) for l in img.layers) >= LARGE_LAYER
    layout.tag(img.descriptor, "v1")
    repo = f"e2e/lambda-{uuid.uuid4().hex[:8]}"
    roundtrip(skopeo, layout, img, harness.host, repo, tmp_path)

    # Upload sessions handed out by the function point at the upload endpoint, signed.
    res = harness.request("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
    assert res.status == 202
    assert res.headers["location"].startswith(f"http://127.0.0.1:{harness.upload_port}/v2/")
    assert "_state=" in res.headers["location"]
    # The manifest comes back byte-identical through the function.
    res = harness.request("GET", f"/v2/{repo}/manifests/v1", {"Accept": OCI_MANIFEST})
    assert res.status == 200 and res.body == img.manifest
    # A body over the Lambda payload limit never reaches the function.
    big = harness.request("PATCH", f"/v2/{repo}/blobs/uploads/anything",
                          {"Content-Type": "application/octet-stream"}, data=b"\0" * (7 * 1024 * 1024))
    assert big.status == 413
