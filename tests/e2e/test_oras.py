"""End-to-end: the `oras` Python SDK pushes and pulls artifacts (monolithic and chunked
uploads, a Helm-chart-shaped artifact); every request's answer is recorded and checked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import urllib.parse
from pathlib import Path

import oras.client
import oras.oci
import pytest

from ocilayout import OCI_INDEX, OCI_MANIFEST, Layout, sample_layers, sha256_digest

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


class Recorder:
    """Keeps (method, url, status, headers) of every HTTP exchange the client makes."""

    def __init__(self, client):
        self.calls: list[tuple[str, str, int, dict, object]] = []
        client.session.hooks["response"].append(self._hook)

    def _hook(self, response, *args, **kwargs):
        req = response.request
        self.calls.append((req.method, req.url, response.status_code,
                           {k.lower(): v for k, v in response.headers.items()}, req))

    def by_method(self, method):
        return [c for c in self.calls if c[0] == method]


@pytest.fixture
def client(registry):
    c = oras.client.OrasClient(hostname=registry.host, insecure=True)
    send = c.session.request

    def request_with_timeout(*args, **kwargs):  # a hung registry fails the test, not the run
        kwargs.setdefault("timeout", 60)
        return send(*args, **kwargs)

    c.session.request = request_with_timeout
    return c, Recorder(c)


CYCLONEDX = "application/vnd.cyclonedx+json"


def query_digest(url: str) -> str | None:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("digest", [None])[0]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def random_bytes(n: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n)


def get_manifest(registry, repo, ref):
    res = registry.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": OCI_MANIFEST})
    assert res.status == 200, res
    assert res.headers["content-type"] == OCI_MANIFEST
    assert res.headers["docker-content-digest"] == sha256_digest(res.body)
    return res.json()


def test_monolithic_push_and_pull(registry, client, tmp_path):
    c, rec = client
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "notes.txt": b"hello from the e2e suite\n" * 20,
        "payload.bin": random_bytes(200_000, "mono"),
    }
    paths = [str(write(src / name, data)) for name, data in files.items()]
    target = f"{registry.host}/e2e/artifact:v1"

    res = c.push(target=target, files=paths, disable_path_validation=True, quiet=True)
    assert res.status_code == 201

    # Each blob: POST opens a session (202 + Location), PUT with the body closes it (201).
    puts = [call for call in rec.by_method("PUT") if "/blobs/uploads/" in call[1]]
    assert len(puts) == 3  # two files and the empty config
    for _, url, status, headers, req in puts:
        assert status == 201, url
        want = query_digest(url)
        assert want
        assert headers["docker-content-digest"] == want
        assert sha256_digest(req.body) == want
    assert not rec.by_method("PATCH")

    manifest = get_manifest(registry, "e2e/artifact", "v1")
    titles = {l["annotations"]["org.opencontainers.image.title"]: l for l in manifest["layers"]}
    assert set(titles) == set(files)
    for name, data in files.items():
        assert titles[name]["digest"] == sha256_digest(data)
        assert titles[name]["size"] == len(data)

    out = tmp_path / "out"
    pulled = c.pull(target=target, outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data


def test_chunked_push_and_pull(registry, client, tmp_path):
    c, rec = client
    chunk = 64 * 1024
    big = random_bytes(5 * chunk + 1234, "chunked")  # 6 PATCHes, the last one short
    small = b"a small file, one chunk\n"
    src = tmp_path / "src"
    src.mkdir()
    paths = [str(write(src / "big.bin", big)), str(write(src / "small.txt", small))]
    target = f"{registry.host}/e2e/chunked:v1"

    res = c.push(target=target, files=paths, disable_path_validation=True,
                 do_chunked=True, chunk_size=chunk, quiet=True)
    assert res.status_code == 201

    patches = rec.by_method("PATCH")
    assert len(patches) == 6 + 1
    big_patches = patches[:6]
    offset = 0
    session_paths = set()
    for i, (_, url, status, headers, req) in enumerate(big_patches):
        n = len(req.body)
        assert n == (chunk if i < 5 else 1234)
        assert req.headers["Content-Range"] == f"{offset}-{offset + n - 1}"
        offset += n
        assert status == 202, (i, url, status)
        # The registry reports everything it has of the upload so far.
        assert headers.get("range") == f"0-{offset - 1}", (i, headers)
        location = urllib.parse.urlsplit(headers["location"]).path
        assert location.startswith("/v2/e2e/chunked/blobs/uploads/"), headers
        session_paths.add(location)
    assert offset == len(big)
    assert len(session_paths) == 1, "one upload session for all chunks of a blob"

    closes = [c_ for c_ in rec.by_method("PUT") if "/blobs/uploads/" in c_[1]]
    closing_big = [c_ for c_ in closes if query_digest(c_[1]) == sha256_digest(big)]
    assert len(closing_big) == 1
    assert closing_big[0][2] == 201
    assert closing_big[0][3]["docker-content-digest"] == sha256_digest(big)

    head = registry.request("HEAD", f"/v2/e2e/chunked/blobs/{sha256_digest(big)}")
    assert head.status == 200 and int(head.headers["content-length"]) == len(big)
    assert registry.request("GET", f"/v2/e2e/chunked/blobs/{sha256_digest(big)}").body == big

    out = tmp_path / "out"
    c.pull(target=target, outdir=str(out))
    assert (out / "big.bin").read_bytes() == big
    assert (out / "small.txt").read_bytes() == small


def helm_chart_tgz(name: str, version: str) -> bytes:
    files = {
        f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n".encode(),
        f"{name}/values.yaml": b"replicaCount: 1\nimage:\n  repository: nginx\n",
        f"{name}/templates/deployment.yaml": b"apiVersion: apps/v1\nkind: Deployment\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_helm_chart_artifact_media_types(registry, client, tmp_path):
    c, _ = client
    chart = helm_chart_tgz("mychart", "0.1.0")
    config = json.dumps({"apiVersion": "v2", "name": "mychart", "version": "0.1.0",
                         "type": "application"}).encode()
    chart_path = write(tmp_path / "mychart-0.1.0.tgz", chart)
    config_path = write(tmp_path / "config.json", config)
    target = f"{registry.host}/e2e/charts/mychart:0.1.0"

    res = c.push(target=target, files=[f"{chart_path}:{HELM_CHART}"],
                 manifest_config=f"{config_path}:{HELM_CONFIG}",
                 disable_path_validation=True, quiet=True)
    assert res.status_code == 201

    manifest = get_manifest(registry, "e2e/charts/mychart", "0.1.0")
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == {"mediaType": HELM_CONFIG, "digest": sha256_digest(config),
                                  "size": len(config)}
    assert len(manifest["layers"]) == 1
    layer = manifest["layers"][0]
    assert layer["mediaType"] == HELM_CHART
    assert layer["digest"] == sha256_digest(chart) and layer["size"] == len(chart)

    cfg = registry.request("GET", f"/v2/e2e/charts/mychart/blobs/{sha256_digest(config)}")
    assert cfg.status == 200 and cfg.body == config
    blob = registry.request("GET", f"/v2/e2e/charts/mychart/blobs/{sha256_digest(chart)}")
    assert blob.status == 200 and blob.body == chart
    with tarfile.open(fileobj=io.BytesIO(blob.body), mode="r:gz") as tar:
        assert "mychart/Chart.yaml" in tar.getnames()
    tags = registry.request("GET", "/v2/e2e/charts/mychart/tags/list").json()
    assert tags["tags"] == ["0.1.0"]


def test_tags_listing_pagination_and_delete(registry, client, tmp_path):
    c, _ = client
    path = write(tmp_path / "f.txt", b"tagged\n")
    tags = [f"t{i}" for i in range(5)]
    for i, tag in enumerate(tags):  # distinct manifests, so deleting one leaves the rest
        c.push(target=f"{registry.host}/e2e/tagged:{tag}", files=[str(path)],
               manifest_annotations={"e2e.index": str(i)}, disable_path_validation=True, quiet=True)
    target = f"{registry.host}/e2e/tagged"
    assert c.get_tags(target) == tags
    assert c.get_tags(target, N=2) == tags[:2]

    # Follow the Link header page by page, as the spec describes.
    seen, url, pages = [], "/v2/e2e/tagged/tags/list?n=2", 0
    while url:
        res = registry.request("GET", url)
        assert res.status == 200, res
        page = res.json()["tags"]
        assert len(page) <= 2
        seen += page
        pages += 1
        link = res.headers.get("link")
        url = link.split(";")[0].strip("<> ") if link else None
        assert pages <= 5, "Link header never ends"
    assert seen == tags
    assert pages == 3

    assert c.delete_tag(f"{target}:t3", "t3") is True
    assert c.get_tags(target) == ["t0", "t1", "t2", "t4"]
    assert registry.request("HEAD", "/v2/e2e/tagged/manifests/t3", {"Accept": OCI_MANIFEST}).status == 404
    assert registry.request("HEAD", "/v2/e2e/tagged/manifests/t4", {"Accept": OCI_MANIFEST}).status == 200


def test_artifact_with_subject_is_listed_as_referrer(registry, client, skopeo, tmp_path):
    c, rec = client
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("subject"))
    layout.tag(img.descriptor, "v1")
    skopeo.copy(f"oci:{layout.root}:v1", f"docker://{registry.host}/e2e/signed:v1")

    sig_type = "application/vnd.example.signature.v1+json"
    sig = write(tmp_path / "sig.json", b'{"signature": "e2e"}')
    cfg = write(tmp_path / "cfg.json", b"{}")
    res = c.push(target=f"{registry.host}/e2e/signed:sig", files=[str(sig)],
                 manifest_config=f"{cfg}:{sig_type}",
                 subject=oras.oci.Subject(mediaType=OCI_MANIFEST, digest=img.digest,
                                          size=len(img.manifest)),
                 disable_path_validation=True, quiet=True)
    assert res.status_code == 201
    assert res.headers.get("OCI-Subject") == img.digest  # the registry processed `subject`
    sig_manifest_digest = res.headers["Docker-Content-Digest"]
    put = [call for call in rec.by_method("PUT") if "/manifests/" in call[1]][-1]
    assert sha256_digest(put[4].body) == sig_manifest_digest

    listing = registry.request("GET", f"/v2/e2e/signed/referrers/{img.digest}")
    assert listing.status == 200
    assert listing.headers["content-type"] == OCI_INDEX
    index = listing.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    # The registry's own scan may have added the image's SBOM (a CycloneDX referrer).
    others = [m for m in index["manifests"] if m.get("artifactType") != CYCLONEDX]
    assert len(others) == 1, index
    ref = others[0]
    assert ref["digest"] == sig_manifest_digest
    assert ref["mediaType"] == OCI_MANIFEST
    assert ref["size"] == len(put[4].body)
    assert ref["artifactType"] == sig_type  # no artifactType: the config media type stands in

    quoted = urllib.parse.quote(sig_type, safe="")
    hit = registry.request("GET", f"/v2/e2e/signed/referrers/{img.digest}?artifactType={quoted}")
    assert [m["digest"] for m in hit.json()["manifests"]] == [sig_manifest_digest]
    assert hit.headers.get("oci-filters-applied") == "artifactType"
    miss = registry.request("GET", f"/v2/e2e/signed/referrers/{img.digest}?artifactType=application%2Fx-other")
    assert miss.status == 200 and miss.json()["manifests"] == []

    # A subject nobody refers to still answers 200 with an empty index.
    none = registry.request("GET", f"/v2/e2e/signed/referrers/{sig_manifest_digest}")
    assert none.status == 200 and none.json()["manifests"] == []
