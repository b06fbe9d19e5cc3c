"""End-to-end: what was pushed survives a clean shutdown (SIGTERM must exit 0) and a restart of
a new process on the same data dir."""

from __future__ import annotations

import json
import signal

from ocilayout import OCI_MANIFEST, Layout, read_blob, resolve, sample_layers


def test_push_survives_sigterm_and_restart(registry_factory, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("durable"))
    layout.tag(img.descriptor, "v1")

    first = registry_factory().start()
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{first.host}/e2e/durable:v1")
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{first.host}/e2e/durable:stable")

    rc = first.stop(signal.SIGTERM)
    assert rc == 0, f"registry exited with {rc} on SIGTERM"

    second = registry_factory(first.data_dir).start()
    repo = f"docker://{second.host}/e2e/durable"
    assert sorted(skopeo.list_tags(repo)["Tags"]) == ["stable", "v1"]
    info = skopeo.inspect_json(f"{repo}:v1")
    assert info["Digest"] == img.digest
    assert info["Layers"] == img.layer_digests

    res = second.request("GET", "/v2/e2e/durable/manifests/v1", {"Accept": OCI_MANIFEST})
    assert res.status == 200 and res.body == img.manifest
    catalog = second.request("GET", "/v2/_catalog").json()
    assert "e2e/durable" in catalog["repositories"]

    dst = tmp_path / "dst"
    skopeo.copy(f"{repo}:v1", f"oci:{dst}:v1")
    assert resolve(dst, "v1")["digest"] == img.digest
    assert read_blob(dst, img.digest) == img.manifest
    assert read_blob(dst, img.config_digest) == img.config
    for digest, data in zip(img.layer_digests, img.layers):
        assert read_blob(dst, digest) == data
    assert [l["digest"] for l in json.loads(read_blob(dst, img.digest))["layers"]] == img.layer_digests

    # The second process shuts down cleanly too.
    assert second.stop(signal.SIGTERM) == 0


def test_sigint_also_exits_cleanly(registry):
    assert registry.stop(signal.SIGINT) == 0
