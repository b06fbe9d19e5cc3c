"""End-to-end with podman and buildah (Debian's, as root, vfs storage, no daemon): buildah
builds an image from scratch and pushes it; podman pulls it into empty storage, pushes
it to another repository, and the registry serves both byte-identical."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


class Containers:
    """podman and buildah over a private storage root (vfs driver, cgroupfs, file events)."""

    def __init__(self, root: Path):
        for tool in ("podman", "buildah"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} not installed: run tests/install-deps.sh", pytrace=False)
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        # podman refuses a runroot path over 50 characters: keep it short, under /tmp.
        self.runroot = Path(tempfile.mkdtemp(prefix="e2e-rr-", dir="/tmp"))

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        common = ["--root", str(self.root / "storage"), "--runroot", str(self.runroot),
                  "--storage-driver", "vfs"]
        if tool == "podman":
            common += ["--cgroup-manager", "cgroupfs", "--events-backend", "file",
                       "--tmpdir", str(self.root / "tmp")]
        res = subprocess.run([tool, *common, *args], capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": str(self.root / "tmp"),
                                  "HOME": str(self.root)})
        if check and res.returncode != 0:
            raise AssertionError(f"$ {tool} {' '.join(args)}\nexit {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run("podman", *args, check=check)

    def buildah(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run("buildah", *args, check=check)


@pytest.fixture
def containers(tmp_path):
    made: list[Containers] = []

    def make(name: str) -> Containers:
        made.append(Containers(tmp_path / name))
        return made[-1]

    yield make
    for c in made:
        c.close()


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
