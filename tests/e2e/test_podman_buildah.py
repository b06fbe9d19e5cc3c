"""End-to-end with podman and buildah (Debian's, as root, vfs storage, no daemon): buildah
builds an image from scratch and pushes it; podman pulls it into empty storage, pushes
it to another repository, and the registry serves both byte-identical. The `containers`
fixture (conftest.py) gives each role its own storage."""

from __future__ import annotations

import json


def test_buildah_push_podman_pull_and_push(registry, tmp_path, skopeo, containers):
    builder = containers("builder")
    (tmp_path / "hello.txt").write_text("hello from buildah\n")
    ctr = builder.buildah("from", "scratch").stdout.strip()
    builder.buildah("copy", ctr, str(tmp_path / "hello.txt"), "/hello.txt")
    builder.buildah("config", "--label", "e2e=podman", "--cmd", "/hello", ctr)
    builder.buildah("commit", "--format", "oci", ctr, "localhost/e2e-podman:v1")
    src = f"{registry.host}/e2e/podman:v1"
    builder.buildah("push", "--tls-verify=false", "localhost/e2e-podman:v1", f"docker://{src}")

    # podman pulls into empty storage: everything comes from the registry.
    puller = containers("puller")
    puller.podman("pull", "--tls-verify=false", src)
    inspected = json.loads(puller.podman("image", "inspect", src).stdout)[0]
    assert inspected["Labels"]["e2e"] == "podman"
    assert inspected["Config"]["Cmd"] == ["/hello"]

    # podman pushes it on to another repository; both serve the same manifest.
    dst = f"{registry.host}/e2e/podman-copy:v1"
    puller.podman("push", "--tls-verify=false", src, f"docker://{dst}")
    a = skopeo.inspect_json(f"docker://{src}")
    b = skopeo.inspect_json(f"docker://{dst}")
    assert a["Layers"] == b["Layers"]
    assert a["Labels"]["e2e"] == "podman"
    tags = registry.request("GET", "/v2/e2e/podman-copy/tags/list").json()
    assert tags["tags"] == ["v1"]

    # A second pull of the copy into fresh storage gets the same image id.
    again = containers("again")
    again.podman("pull", "--tls-verify=false", dst)
    assert json.loads(again.podman("image", "inspect", dst).stdout)[0]["Id"] == inspected["Id"]
