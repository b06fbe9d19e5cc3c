"""podman and buildah for the e2e tests (shared by test_podman_buildah.py and test_auth.py):
each `Containers` runs them over its own private storage root, so nothing on the machine
(images, auth files, registries.conf search lists) leaks into a test."""

from __future__ import annotations

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
