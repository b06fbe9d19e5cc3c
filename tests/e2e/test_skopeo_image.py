"""End-to-end: a single-platform OCI image pushed and pulled with skopeo, inspected, listed and
deleted; bytes must survive the round trip exactly."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json

import pytest

from ocilayout import OCI_MANIFEST, Layout, read_blob, resolve, sample_layers, sha256_digest

ACCEPT_ALL = ", ".join([
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


@pytest.fixture
def image(tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("app-v1"))
    layout.tag(img.descriptor, "v1")
    img2 = layout.add_image(sample_layers("app-v2"), env=["PATH=/bin", "VERSION=2"])
    layout.tag(img2.descriptor, "v2")
    return layout, img, img2


def test_push_then_pull_round_trip_is_byte_exact(registry, skopeo, image, tmp_path):
    layout, img, _ = image
    ref = f"docker://{registry.host}/e2e/app:v1"
    skopeo.copy(f"oci:{layout.root}:v1", ref)

    # What the registry serves is exactly what was pushed.
    res = registry.request("GET", "/v2/e2e/app/manifests/v1", {"Accept": ACCEPT_ALL})
    assert res.status == 200
    assert res.headers["content-type"] == OCI_MANIFEST
    assert res.headers["docker-content-digest"] == img.digest
    assert res.body == img.manifest
    for digest, data in zip(img.layer_digests + [img.config_digest], img.layers + [img.config]):
        head = registry.request("HEAD", f"/v2/e2e/app/blobs/{digest}")
        assert head.status == 200, digest
        assert int(head.headers["content-length"]) == len(data)
        got = registry.request("GET", f"/v2/e2e/app/blobs/{digest}")
        assert got.status == 200 and got.body == data, digest

    # And skopeo pulls the same bytes back into a fresh layout.
    dst = tmp_path / "dst"
    skopeo.copy(ref, f"oci:{dst}:pulled")
    desc = resolve(dst, "pulled")
    assert desc["digest"] == img.digest
    assert desc["mediaType"] == OCI_MANIFEST
    assert read_blob(dst, img.digest) == img.manifest
    pulled = json.loads(read_blob(dst, img.digest))
    assert [l["digest"] for l in pulled["layers"]] == img.layer_digests
    for digest, data in zip(img.layer_digests, img.layers):
        assert read_blob(dst, digest) == data
    assert read_blob(dst, img.config_digest) == img.config


def test_inspect_reports_digest_layers_and_config(registry, skopeo, image):
    layout, img, _ = image
    ref = f"docker://{registry.host}/e2e/app:v1"
    skopeo.copy(f"oci:{layout.root}:v1", ref)

    info = skopeo.inspect_json(ref)
    assert info["Digest"] == img.digest
    assert info["Layers"] == img.layer_digests
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Env"] == ["PATH=/bin"]
    assert info["RepoTags"] == ["v1"]

    assert skopeo.inspect(ref, "--raw").stdout.encode() == img.manifest
    assert skopeo.inspect(ref, "--config", "--raw").stdout.encode() == img.config
    by_digest = skopeo.inspect_json(f"docker://{registry.host}/e2e/app@{img.digest}")
    assert by_digest["Digest"] == img.digest


def test_list_tags(registry, skopeo, image):
    layout, img, img2 = image
    repo = f"docker://{registry.host}/e2e/app"
    skopeo.copy(f"oci:{layout.root}:v1", f"{repo}:v1")
    skopeo.copy(f"oci:{layout.root}:v2", f"{repo}:v2")
    skopeo.copy(f"oci:{layout.root}:v1", f"{repo}:latest")

    tags = skopeo.list_tags(repo)
    assert tags["Repository"] == f"{registry.host}/e2e/app"
    assert sorted(tags["Tags"]) == ["latest", "v1", "v2"]

    res = registry.request("GET", "/v2/e2e/app/tags/list")
    assert res.status == 200
    assert res.json() == {"name": "e2e/app", "tags": ["latest", "v1", "v2"]}
    assert registry.request("HEAD", "/v2/e2e/app/manifests/latest").headers["docker-content-digest"] == img.digest
    assert registry.request("HEAD", "/v2/e2e/app/manifests/v2").headers["docker-content-digest"] == img2.digest


def test_delete_makes_manifest_unknown(registry, skopeo, image):
    layout, img, img2 = image
    repo = f"docker://{registry.host}/e2e/app"
    skopeo.copy(f"oci:{layout.root}:v1", f"{repo}:v1")
    skopeo.copy(f"oci:{layout.root}:v2", f"{repo}:v2")

    skopeo.delete(f"{repo}:v1")  # resolves v1 to its digest and DELETEs the manifest

    res = skopeo.inspect(f"{repo}:v1", check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert "manifest unknown" in res.stderr.lower(), skopeo.describe(res)
    for ref in (img.digest, "v1"):
        for method in ("GET", "HEAD"):
            r = registry.request(method, f"/v2/e2e/app/manifests/{ref}", {"Accept": ACCEPT_ALL})
            assert r.status == 404, (method, ref, r)
    err = registry.request("GET", f"/v2/e2e/app/manifests/{img.digest}", {"Accept": ACCEPT_ALL}).json()
    assert err["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert skopeo.list_tags(repo)["Tags"] == ["v2"]

    # The other image is untouched.
    info = skopeo.inspect_json(f"{repo}:v2")
    assert info["Digest"] == img2.digest
    assert info["Env"] == ["PATH=/bin", "VERSION=2"]
    assert sha256_digest(skopeo.inspect(f"{repo}:v2", "--raw").stdout.encode()) == img2.digest


def test_concurrent_pushes_of_shared_blobs(registry, skopeo, tmp_path):
    """Eight skopeo copies at once of one image (with an 8 MiB layer) into three repositories:
    the same blobs are uploaded concurrently, and every copy must come back intact."""
    layout = Layout(tmp_path / "src")
    layers = sample_layers("concurrent") + [{"big.bin": hashlib.shake_256(b"big").digest(8 << 20)}]
    img = layout.add_image(layers)
    layout.tag(img.descriptor, "v1")
    dests = [f"docker://{registry.host}/e2e/c{i % 3}:t{i}" for i in range(8)]

    def push(dest):
        return skopeo.run("copy", "--dest-tls-verify=false", f"oci:{layout.root}:v1", dest, check=False)

    with concurrent.futures.ThreadPoolExecutor(len(dests)) as pool:
        results = list(pool.map(push, dests))
    for res in results:
        assert res.returncode == 0, skopeo.describe(res)

    for i, dest in enumerate(dests):
        repo, tag = dest.split("/", 3)[3].rsplit(":", 1)
        res = registry.request("GET", f"/v2/{repo}/manifests/{tag}", {"Accept": ACCEPT_ALL})
        assert res.status == 200 and res.body == img.manifest, dest
    for repo in ("e2e/c0", "e2e/c1", "e2e/c2"):
        for digest, data in zip(img.layer_digests + [img.config_digest], img.layers + [img.config]):
            blob = registry.request("GET", f"/v2/{repo}/blobs/{digest}")
            assert blob.status == 200 and blob.body == data, (repo, digest)
