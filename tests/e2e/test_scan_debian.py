"""Scanning a real Debian image: a bookworm root filesystem built by mmdebstrap
(`--variant=essential`, from the main archive; cached under tests/.cache), packaged as an
OCI image, pushed with skopeo into the local registry, scanned against a small OSV file
written for the test from real Debian facts, and pulled under a blocking policy.

The advisories (all real): CVE-2011-4116 (perl File::Temp; Debian: unimportant, never
fixed: every perl binary is affected), CVE-2023-47038 (perl; fixed for bookworm in
5.36.0-7+deb12u1 by DSA-5580-1: the image has that or later), CVE-2022-37434 (zlib; fixed
in 1:1.2.11.dfsg-4.1 before bookworm: an epoch comparison) and a bullseye-only entry
(another release: never matched). The expected findings are computed from the image's
own dpkg status, so a Debian point release does not break the test."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from ocilayout import Layout, gzip_bytes

CACHE = Path(os.environ.get("E2E_CACHE", REPO_ROOT / "tests" / ".cache"))
ROOTFS = CACHE / "debian-bookworm-essential.tar"


def debian_rootfs() -> Path:
    if ROOTFS.exists():
        return ROOTFS
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / "debian-bookworm-essential.partial.tar"  # the suffix tells mmdebstrap: a tar
    subprocess.run(["mmdebstrap", "--quiet", "--variant=essential", "--mode=root", "bookworm",
                    str(tmp), "http://deb.debian.org/debian"], check=True, timeout=900)
    tmp.rename(ROOTFS)
    return ROOTFS


def dpkg_status(rootfs: bytes) -> list[dict]:
    with tarfile.open(fileobj=io.BytesIO(rootfs)) as tar:
        status = tar.extractfile("./var/lib/dpkg/status").read().decode()
    packages = []
    for block in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return packages


def advisory(cve: str, package: str, release: str, fixed: str | None, urgency: str) -> dict:
    events = [{"introduced": "0"}] + ([{"fixed": fixed}] if fixed else [])
    return {"id": f"DEBIAN-{cve}", "modified": "2024-06-01T00:00:00Z", "aliases": [cve],
            "summary": f"{package}: {cve}",
            "affected": [{"package": {"ecosystem": f"Debian:{release}", "name": package},
                          "ranges": [{"type": "ECOSYSTEM", "events": events}],
                          "ecosystem_specific": {"urgency": urgency}}]}


def osv_zip(path: Path) -> Path:
    entries = [
        advisory("CVE-2011-4116", "perl", "12", None, "unimportant"),
        advisory("CVE-2023-47038", "perl", "12", "5.36.0-7+deb12u1", "high"),
        advisory("CVE-2022-37434", "zlib", "12", "1:1.2.11.dfsg-4.1", "medium"),
        advisory("CVE-2023-31484", "perl", "11", "5.32.1-4+deb11u3", "high"),
    ]
    with zipfile.ZipFile(path, "w") as z:
        for e in entries:
            z.writestr(f"debian/{e['id']}.json", json.dumps(e))
    return path


def api(registry, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    return registry.request(method, path, {"content-type": "application/json"}, data)


def test_debian_image_findings_policy_and_sbom(registry_factory, registry_bin, skopeo, tmp_path):
    rootfs = debian_rootfs().read_bytes()
    perl = {p["Package"]: p["Version"] for p in dpkg_status(rootfs)
            if p.get("Source", p["Package"]).split(" ")[0] == "perl"}
    assert "perl-base" in perl, perl

    registry = registry_factory().start()
    # The database first (uploaded by the CLI), then the push: the scan on push uses it.
    zip_path = osv_zip(tmp_path / "osv.zip")
    out = subprocess.run([str(registry_bin), "vulndb", "import", str(zip_path),
                          "--registry-url", registry.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "imported 4 advisories" in out.stdout, out.stdout
    layout = Layout(tmp_path / "debian")
    img = layout.add_tar_image(gzip_bytes(rootfs), "sha256:" + hashlib.sha256(rootfs).hexdigest())
    layout.tag(img.descriptor, "12")
    repo = "debian/bookworm"
    skopeo.copy(f"oci:{layout.root}:12", f"docker://{registry.host}/{repo}:12")

    report = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        res = registry.request("GET", f"/api/v1/scan-reports?repository={repo}&digest={img.digest}")
        if res.status == 200 and res.json()["status"] == "completed":
            report = res.json()
            break
        time.sleep(0.2)
    assert report is not None, "no scan report"
    assert report["distro"].startswith("Debian GNU/Linux 12")
    assert report["packages"] == len(dpkg_status(rootfs))
    got = sorted((f["id"], f["package"], f["installedVersion"], f.get("fixedVersion"), f["severity"])
                 for f in report["findings"])
    want = sorted(("DEBIAN-CVE-2011-4116", name, version, None, "LOW") for name, version in perl.items())
    assert got == want
    assert report["summary"]["low"] == len(perl)
    assert report["findings"][0]["layer"] == img.layer_digests[0]

    # The CLI's summary table and the database status.
    cli = subprocess.run([str(registry_bin), "scan", repo, img.digest, "--registry-url", registry.url],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"low {len(perl)}" in cli.stdout and "critical 0" in cli.stdout, cli.stdout
    rows = [line.split() for line in cli.stdout.splitlines() if "DEBIAN-CVE-2011-4116" in line]
    assert sorted(r[2] for r in rows) == sorted(perl), cli.stdout
    status = subprocess.run([str(registry_bin), "vulndb", "status", "--registry-url", registry.url],
                            capture_output=True, text=True, timeout=60)
    assert "advisories: 4" in status.stdout and report["dbVersion"] in status.stdout, status.stdout

    # The SBOM is a referrer of the image and lists every package.
    referrers = registry.request("GET", f"/v2/{repo}/referrers/{img.digest}").json()["manifests"]
    assert [r["artifactType"] for r in referrers] == ["application/vnd.cyclonedx+json"]
    sbom_manifest = registry.request("GET", f"/v2/{repo}/manifests/{referrers[0]['digest']}",
                                     {"accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    sbom_blob = registry.request("GET", f"/v2/{repo}/blobs/{sbom_manifest['layers'][0]['digest']}").json()
    purls = {c.get("purl", "") for c in sbom_blob["components"]}
    assert any(p.startswith("pkg:deb/debian/perl-base@") for p in purls), sorted(purls)[:5]

    # A policy blocking LOW refuses the pull; allowlisting the CVE lets it through.
    assert api(registry, "POST", "/api/v1/projects", {"name": "debian"}).status == 201
    policy = {"vulnerabilityPolicy": {"blockSeverity": "LOW"}}
    assert api(registry, "PATCH", "/api/v1/projects/debian", policy).status == 200
    pulled = tmp_path / "pulled"
    res = skopeo.run("copy", "--src-tls-verify=false", f"docker://{registry.host}/{repo}:12",
                     f"oci:{pulled}:12", check=False)
    assert res.returncode != 0
    assert "DENIED" in res.stderr or "denied" in res.stderr, res.stderr[-2000:]
    blocked = registry.request("GET", f"/v2/{repo}/manifests/12",
                               {"accept": "application/vnd.oci.image.manifest.v1+json"})
    assert blocked.status == 403
    message = blocked.json()["errors"][0]["message"]
    assert f"{len(perl)} findings at LOW or above" in message and "DEBIAN-CVE-2011-4116" in message
    policy["vulnerabilityPolicy"]["allowlist"] = ["CVE-2011-4116"]
    assert api(registry, "PATCH", "/api/v1/projects/debian", policy).status == 200
    skopeo.copy(f"docker://{registry.host}/{repo}:12", f"oci:{pulled}:12")
