"""End-to-end: a two-platform (amd64, arm64) OCI image index copied with `skopeo copy --all`
into the registry and back; the index and both children must be served byte-exact."""

from __future__ import annotations

import json

from ocilayout import OCI_INDEX, OCI_MANIFEST, Layout, read_blob, resolve, sample_layers

ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"


def test_multi_arch_index_round_trip(registry, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    amd = layout.add_image(sample_layers("multi-amd64"), architecture="amd64")
    arm = layout.add_image(sample_layers("multi-arm64"), architecture="arm64")
    index, index_desc = layout.add_index([amd, arm])
    layout.tag(index_desc, "multi")
    ref = f"docker://{registry.host}/e2e/multi:v1"

    skopeo.copy(f"oci:{layout.root}:multi", ref, "--all")

    # By tag: the index itself, with the index media type.
    res = registry.request("GET", "/v2/e2e/multi/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 200
    assert res.headers["content-type"] == OCI_INDEX
    assert res.headers["docker-content-digest"] == index_desc["digest"]
    assert res.body == index
    head = registry.request("HEAD", "/v2/e2e/multi/manifests/v1", {"Accept": ACCEPT})
    assert head.status == 200 and head.headers["content-type"] == OCI_INDEX
    assert int(head.headers["content-length"]) == len(index)

    # By digest: the index and each platform manifest, and every blob they reference.
    res = registry.request("GET", f"/v2/e2e/multi/manifests/{index_desc['digest']}", {"Accept": ACCEPT})
    assert res.status == 200 and res.body == index
    assert res.headers["content-type"] == OCI_INDEX
    for img in (amd, arm):
        res = registry.request("GET", f"/v2/e2e/multi/manifests/{img.digest}", {"Accept": ACCEPT})
        assert res.status == 200, img.architecture
        assert res.headers["content-type"] == OCI_MANIFEST
        assert res.headers["docker-content-digest"] == img.digest
        assert res.body == img.manifest
        for digest, data in zip(img.layer_digests + [img.config_digest], img.layers + [img.config]):
            blob = registry.request("GET", f"/v2/e2e/multi/blobs/{digest}")
            assert blob.status == 200 and blob.body == data, (img.architecture, digest)

    # skopeo picks the right child per platform.
    for img in (amd, arm):
        info = json.loads(
            skopeo.run("--override-arch", img.architecture, "--override-os", "linux",
                       "inspect", "--tls-verify=false", ref).stdout)
        assert info["Digest"] == index_desc["digest"]
        assert info["Architecture"] == img.architecture
        assert info["Layers"] == img.layer_digests
    assert skopeo.inspect(ref, "--raw").stdout.encode() == index

    # Back into a fresh layout: identical index, children and blobs.
    dst = tmp_path / "dst"
    skopeo.copy(ref, f"oci:{dst}:back", "--all")
    desc = resolve(dst, "back")
    assert desc["digest"] == index_desc["digest"]
    assert desc["mediaType"] == OCI_INDEX
    assert read_blob(dst, index_desc["digest"]) == index
    for img in (amd, arm):
        assert read_blob(dst, img.digest) == img.manifest
        assert read_blob(dst, img.config_digest) == img.config
        for digest, data in zip(img.layer_digests, img.layers):
            assert read_blob(dst, digest) == data


def test_copy_one_platform_out_of_an_index(registry, skopeo, tmp_path):
    """Copying only the index for one platform (no --all) must still give a pullable image:
    skopeo then pushes just that platform's manifest under the tag."""
    layout = Layout(tmp_path / "src")
    amd = layout.add_image(sample_layers("single-amd64"), architecture="amd64")
    arm = layout.add_image(sample_layers("single-arm64"), architecture="arm64")
    _, index_desc = layout.add_index([amd, arm])
    layout.tag(index_desc, "multi")
    ref = f"docker://{registry.host}/e2e/one:v1"

    skopeo.run("--override-arch", "arm64", "--override-os", "linux", "copy",
               "--dest-tls-verify=false", f"oci:{layout.root}:multi", ref)
    res = registry.request("GET", "/v2/e2e/one/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 200
    assert res.headers["content-type"] == OCI_MANIFEST
    assert res.body == arm.manifest
    assert registry.request("HEAD", f"/v2/e2e/one/manifests/{amd.digest}", {"Accept": ACCEPT}).status == 404
