"""End-to-end: images built by umoci, pulled images unpacked by umoci, cross-repository blob
mounts done by skopeo, and Docker schema 2 manifests (skopeo --format v2s2)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ocilayout import OCI_MANIFEST, Layout, read_blob, resolve, sample_layers, sha256_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def umoci(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("umoci") is None:
        pytest.fail("umoci not installed: run tests/install-deps.sh", pytrace=False)
    res = subprocess.run(["umoci", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"$ umoci {' '.join(args)}\n{res.stdout}\n{res.stderr}"
    return res


def unpack(layout: Path, tag: str, bundle: Path) -> Path:
    umoci("unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle))
    return bundle / "rootfs"


def test_umoci_built_image_round_trip(registry, skopeo, tmp_path):
    src = tmp_path / "umoci-src"
    umoci("init", "--layout", str(src))
    umoci("new", "--image", f"{src}:base")
    bundle = tmp_path / "build"
    rootfs = unpack(src, "base", bundle)
    files = {
        "etc/greeting": b"hello from umoci\n",
        "bin/hello": b"#!/bin/sh\ncat /etc/greeting\n",
        "srv/data/blob.bin": bytes(range(256)) * 300,
    }
    for name, data in files.items():
        (rootfs / name).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / name).write_bytes(data)
    umoci("repack", "--image", f"{src}:v1", str(bundle))
    umoci("config", "--image", f"{src}:v1", "--config.cmd", "/bin/hello",
          "--config.env", "GREETING=1", "--architecture", "amd64", "--os", "linux")
    desc = resolve(src, "v1")
    manifest = read_blob(src, desc["digest"])

    ref = f"docker://{registry.host}/e2e/umoci:v1"
    skopeo.copy(f"oci:{src}:v1", ref)
    info = skopeo.inspect_json(ref)
    assert info["Digest"] == desc["digest"]
    assert "GREETING=1" in info["Env"]
    res = registry.request("GET", "/v2/e2e/umoci/manifests/v1", {"Accept": OCI_MANIFEST})
    assert res.status == 200 and res.body == manifest

    dst = tmp_path / "umoci-dst"
    skopeo.copy(ref, f"oci:{dst}:pulled")
    assert resolve(dst, "pulled")["digest"] == desc["digest"]
    out = unpack(dst, "pulled", tmp_path / "unpacked")
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name
    cfg = json.loads((tmp_path / "unpacked" / "config.json").read_text())
    assert cfg["process"]["args"] == ["/bin/hello"]


def test_pulled_hand_built_image_unpacks(registry, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("unpack"))
    layout.tag(img.descriptor, "v1")
    ref = f"docker://{registry.host}/e2e/unpack:v1"
    skopeo.copy(f"oci:{layout.root}:v1", ref)
    dst = tmp_path / "dst"
    skopeo.copy(ref, f"oci:{dst}:v1")
    rootfs = unpack(dst, "v1", tmp_path / "bundle")
    for layer in sample_layers("unpack"):
        for name, data in layer.items():
            assert (rootfs / name).read_bytes() == data, name


def test_copy_between_repositories_mounts_layers(registry, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("mount"))
    layout.tag(img.descriptor, "v1")
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/e2e/app:v1")

    res = skopeo.copy(f"docker://{registry.host}/e2e/app:v1", f"docker://{registry.host}/e2e/other:v1")
    # skopeo asks for a mount (POST ?mount=&from=) of each layer and logs "mount OK" on 201;
    # a registry that answered 202 instead would make it upload the layer again.
    for digest in img.layer_digests:
        quoted = digest.replace(":", "%3A")
        assert f"POST http://{registry.host}/v2/e2e/other/blobs/uploads/?from=e2e%2Fapp&mount={quoted}" \
            in res.stderr, skopeo.describe(res)
        assert not re.search(rf"PUT \S+/v2/e2e/other/blobs/uploads/\S+digest={quoted}", res.stderr), \
            skopeo.describe(res)
    assert res.stderr.count("... mount OK") == len(img.layer_digests), skopeo.describe(res)

    got = registry.request("GET", "/v2/e2e/other/manifests/v1", {"Accept": OCI_MANIFEST})
    assert got.status == 200 and got.body == img.manifest
    for digest, data in zip(img.layer_digests, img.layers):
        blob = registry.request("GET", f"/v2/e2e/other/blobs/{digest}")
        assert blob.status == 200 and blob.body == data


def test_docker_schema2_manifest(registry, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("v2s2"))
    layout.tag(img.descriptor, "v1")
    ref = f"docker://{registry.host}/e2e/docker:v1"
    skopeo.copy(f"oci:{layout.root}:v1", ref, "--format", "v2s2")

    res = registry.request("GET", "/v2/e2e/docker/manifests/v1", {"Accept": DOCKER_MANIFEST})
    assert res.status == 200
    assert res.headers["content-type"] == DOCKER_MANIFEST
    assert res.headers["docker-content-digest"] == sha256_digest(res.body)
    manifest = res.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert [l["digest"] for l in manifest["layers"]] == img.layer_digests
    assert {l["mediaType"] for l in manifest["layers"]} == {DOCKER_LAYER}

    info = skopeo.inspect_json(ref)
    assert info["Digest"] == sha256_digest(res.body)
    assert info["Layers"] == img.layer_digests
    assert skopeo.inspect(ref, "--raw").stdout.encode() == res.body

    dst = tmp_path / "dst"
    skopeo.copy(ref, f"oci:{dst}:v1")
    rootfs = unpack(dst, "v1", tmp_path / "bundle")
    assert (rootfs / "bin/hello").read_bytes() == sample_layers("v2s2")[0]["bin/hello"]
