"""Scanning on the AWS backend (S3, DynamoDB and SQS on LocalStack, the local binary
polling a scan queue of this test's own): a vulnerability database uploaded through the
API, an image pushed with skopeo scanned from the queue, its report and SBOM (whose
blob is served by a redirect to S3), and a rescan when a new database is imported."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import pytest

from awsstack import AwsRegistry, aws_env, require_localstack, stop_all
from hooks import FreshQueues
from ocilayout import Layout

OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
STATUS = b"Package: perl-base\nStatus: install ok installed\nVersion: 5.36.0-7+deb12u1\nSource: perl\n\n"


@pytest.fixture
def aws_procs():
    procs = []
    yield procs
    stop_all(procs)


def osv_zip(fixed: str) -> bytes:
    advisory = {"id": "DEBIAN-CVE-2023-47038", "modified": "2024-01-01T00:00:00Z", "aliases": ["CVE-2023-47038"],
                "affected": [{"package": {"ecosystem": "Debian:12", "name": "perl"},
                              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                              "ecosystem_specific": {"urgency": "high"}}]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("DEBIAN-CVE-2023-47038.json", json.dumps(advisory))
    return buf.getvalue()


def report_of(registry, repo: str, digest: str, done, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = registry.request("GET", f"/api/v1/scan-reports?repository={repo}&digest={digest}")
        if res.status == 200 and done(res.json()):
            return res.json()
        time.sleep(0.2)
    raise AssertionError(f"no report for {repo}@{digest} in {timeout}s")


def test_scan_through_sqs_with_report_sbom_and_rescan(registry_bin, skopeo, tmp_path, aws_procs):
    require_localstack()
    queues = FreshQueues(max_receive_count=3, visibility=60, kind="scan")
    try:
        registry = AwsRegistry(registry_bin, tmp_path / "aws-scan.log", dict(aws_env(), **queues.env()))
        aws_procs.append(registry.start())
        upload = registry.request("POST", "/api/v1/vulndb?source=first.zip",
                                  {"content-type": "application/zip"}, osv_zip("5.36.0-7+deb12u2"))
        assert upload.status == 201, upload.body
        layout = Layout(tmp_path / "src")
        img = layout.add_image([{"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": STATUS}])
        layout.tag(img.descriptor, "v1")
        repo = f"e2e/scan-{uuid.uuid4().hex[:8]}"
        skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/{repo}:v1")

        first = report_of(registry, repo, img.digest, lambda r: r["status"] == "completed")
        assert first["dbVersion"] == upload.json()["version"]
        assert [(f["id"], f["package"], f["fixedVersion"]) for f in first["findings"]] == [
            ("DEBIAN-CVE-2023-47038", "perl-base", "5.36.0-7+deb12u2")]
        referrers = registry.request("GET", f"/v2/{repo}/referrers/{img.digest}").json()["manifests"]
        assert len(referrers) == 1 and referrers[0]["digest"] == first["sbom"]
        sbom = registry.request("GET", f"/v2/{repo}/manifests/{first['sbom']}",
                                {"accept": "application/vnd.oci.image.manifest.v1+json"}).json()
        blob = registry.request("GET", f"/v2/{repo}/blobs/{sbom['layers'][0]['digest']}")
        assert blob.status == 307 and "X-Amz-Signature=" in blob.headers["location"]

        # A newer database, fixed below the installed version: the rescan clears the finding.
        second = registry.request("POST", "/api/v1/vulndb?source=second.zip",
                                  {"content-type": "application/zip"}, osv_zip("5.36.0-7"))
        assert second.status == 201, second.body
        again = report_of(registry, repo, img.digest,
                          lambda r: r.get("dbVersion") == second.json()["version"])
        assert again["findings"] == []
    finally:
        queues.close()
