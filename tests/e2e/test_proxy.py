"""End-to-end: proxy projects (pull-through cache) of an upstream registry.

The upstream is Debian's `docker-registry` (distribution 2.8, tests/e2e/upstream.py), whose
access log tells which requests the proxy made (manifest HEAD/GET, blob GET). Images are
seeded into it with skopeo from OCI layouts built by hand (ocilayout.py), pulled through the
registry with skopeo, and compared byte for byte. One registry and one anonymous and one
htpasswd upstream serve the module; every test uses its own projects, repositories and
image contents (blobs are shared across projects by digest, so contents must differ), and
the tests that stop an upstream have their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ANSI, RegistryProcess
from ocilayout import (OCI_INDEX, OCI_MANIFEST, Image, Layout, read_blob, resolve,
                       sample_layers)
from upstream import Upstream

ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"
UP_USER, UP_PASS = "e2e-user", "s3cret-Upstream-pw"
PREFETCH_TIMEOUT = 30.0


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_registry(registry_bin, tmp_path_factory):
    """One registry (open: loopback without admin password) allowed to reach 127.0.0.0/8."""
    root = tmp_path_factory.mktemp("proxy-registry")
    (root / "data").mkdir()
    reg = RegistryProcess(registry_bin, root / "data", root / "registry.log",
                          ["--outbound-allow", "127.0.0.0/8"])
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    up = Upstream(tmp_path_factory.mktemp("upstream"), name="upstream").start()
    yield up
    up.close()


@pytest.fixture(scope="module")
def auth_upstream(tmp_path_factory):
    up = Upstream(tmp_path_factory.mktemp("upstream-auth"), auth=(UP_USER, UP_PASS),
                  name="upstream-auth").start()
    yield up
    up.close()


@pytest.fixture
def own_upstream(tmp_path, request):
    """A fresh upstream for a test that stops it."""
    up = Upstream(tmp_path / "own-upstream", name="own-upstream").start()
    request.node.__dict__.setdefault("_registry_procs", []).append(up)
    yield up
    up.close()


@pytest.fixture(autouse=True)
def diagnostics(request, proxy_registry, upstream, auth_upstream):
    """A failing test's report carries the registry's log and the upstreams' logs (the
    conftest hook prints `log_text()` of everything in `_registry_procs`)."""
    request.node.__dict__.setdefault("_registry_procs", [])[:0] = [proxy_registry, upstream, auth_upstream]
    yield
    # Counting reads the upstreams' access logs: they must match distribution's own lines.
    upstream.self_check(require_requests=False)
    auth_upstream.self_check(require_requests=False)


# ---- helpers ----------------------------------------------------------------------------


def create_proxy(reg: RegistryProcess, name: str, upstream_url: str, **proxy) -> dict:
    body = {"name": name, "proxy": {"upstreamUrl": upstream_url, **proxy}}
    res = reg.request("POST", "/api/v1/projects", {"Content-Type": "application/json"},
                      json.dumps(body).encode())
    assert res.status == 201, (res.status, res.body)
    view = res.json()
    assert view["proxy"]["upstreamUrl"] == upstream_url, view
    return view


def seed(skopeo, up: Upstream, layout: Layout, tag: str, repo: str, *extra: str) -> None:
    creds = ["--dest-creds", f"{up.auth[0]}:{up.auth[1]}"] if up.auth else []
    skopeo.copy(f"oci:{layout.root}:{tag}", f"docker://{up.host}/{repo}", *creds, *extra)


def image_layout(root: Path, seed_name: str, tag: str = "v1") -> tuple[Layout, Image]:
    layout = Layout(root)
    img = layout.add_image(sample_layers(seed_name))
    layout.tag(img.descriptor, tag)
    return layout, img


def pull(skopeo, reg: RegistryProcess, ref: str, dest: Path, *extra: str):
    return skopeo.copy(f"docker://{reg.host}/{ref}", f"oci:{dest}:pulled", *extra)


def assert_same_image(dest: Path, img: Image) -> None:
    desc = resolve(dest, "pulled")
    assert desc["digest"] == img.digest, (desc, img.digest)
    assert read_blob(dest, img.digest) == img.manifest
    assert read_blob(dest, img.config_digest) == img.config
    assert len(img.layers) > 0
    for digest, data in zip(img.layer_digests, img.layers):
        assert read_blob(dest, digest) == data, digest


def blobs_of(img: Image) -> list[str]:
    return [img.config_digest, *img.layer_digests]


def oci_error(res) -> tuple[str, str]:
    errors = res.json()["errors"]
    assert len(errors) >= 1, res.body
    return errors[0]["code"], errors[0]["message"]


def blob_gets(up: Upstream, since: int, repo: str) -> dict[str, int]:
    """digest → number of upstream blob GETs in `repo` since the mark."""
    counts: dict[str, int] = {}
    for r in up.select(since=since, method="GET", kind="blob", repository=repo):
        counts[r.reference] = counts.get(r.reference, 0) + 1
    return counts


# ---- 1. anonymous upstream: byte-exact pulls and what they cost upstream ----------------


def test_pull_through_and_upstream_request_counts(proxy_registry, upstream, skopeo, tmp_path):
    layout, img = image_layout(tmp_path / "src", "proxy-app-anon")
    seed(skopeo, upstream, layout, "v1", "team/app:v1")
    create_proxy(proxy_registry, "hub", upstream.url)

    # First pull: the manifest once (HEAD of the tag, GET by digest), each blob once.
    m0 = upstream.mark()
    pull(skopeo, proxy_registry, "hub/team/app:v1", tmp_path / "pull1")
    assert_same_image(tmp_path / "pull1", img)
    upstream.settle(quiet=1.0)  # the scanner may read layers of the new image meanwhile
    why = upstream.describe(m0)
    manifest_gets = upstream.select(since=m0, method="GET", kind="manifest", repository="team/app")
    assert len(manifest_gets) == 1, why
    assert manifest_gets[0].reference in ("v1", img.digest) and manifest_gets[0].status == 200, why
    assert upstream.count("HEAD", "manifest", since=m0, repository="team/app") <= 1, why
    gets = blob_gets(upstream, m0, "team/app")
    assert gets == {d: 1 for d in blobs_of(img)}, why
    assert all(r.user_agent.startswith("registry-proxy") for r in upstream.requests(m0)), why

    # Second pull, the tag still fresh (300 s): nothing at all upstream.
    m1 = upstream.mark()
    pull(skopeo, proxy_registry, "hub/team/app:v1", tmp_path / "pull2")
    assert_same_image(tmp_path / "pull2", img)
    upstream.settle(quiet=1.0)
    assert upstream.select(since=m1, repository="team/app") == [], upstream.describe(m1)

    # A project that checks its tags every time (freshness 0): after the first pull, pulls
    # cost one HEAD of the tag and no GET of anything.
    view = create_proxy(proxy_registry, "hub0", upstream.url, freshnessSecs=0)
    assert view["proxy"]["freshnessSecs"] == 0
    pull(skopeo, proxy_registry, "hub0/team/app:v1", tmp_path / "pull3")
    assert_same_image(tmp_path / "pull3", img)
    m2 = upstream.mark()
    pull(skopeo, proxy_registry, "hub0/team/app:v1", tmp_path / "pull4")
    assert_same_image(tmp_path / "pull4", img)
    upstream.settle(quiet=1.0)
    why = upstream.describe(m2)
    heads = upstream.select(since=m2, method="HEAD", kind="manifest", repository="team/app")
    assert len(heads) >= 1 and all(h.reference == "v1" and h.status == 200 for h in heads), why
    assert upstream.select(since=m2, method="GET") == [], why


# ---- 2. upstream down: cached content served (stale), never-cached content fails --------


def test_upstream_down_serves_cache_and_fails_uncached(proxy_registry, own_upstream, skopeo, tmp_path):
    up = own_upstream
    layout, img = image_layout(tmp_path / "src", "proxy-app-down")
    other = layout.add_image(sample_layers("proxy-app-down-v2"))
    layout.tag(other.descriptor, "v2")
    seed(skopeo, up, layout, "v1", "team/app:v1")
    seed(skopeo, up, layout, "v2", "team/app:v2")
    # Freshness 0: every tag read asks upstream, so a down upstream is noticed at once.
    create_proxy(proxy_registry, "down", up.url, freshnessSecs=0)

    m0 = up.mark()
    pull(skopeo, proxy_registry, "down/team/app:v1", tmp_path / "warm")
    assert_same_image(tmp_path / "warm", img)
    up.settle(quiet=1.0)
    assert blob_gets(up, m0, "team/app") == {d: 1 for d in blobs_of(img)}, up.describe(m0)
    fresh = proxy_registry.request("GET", "/v2/down/team/app/manifests/v1", {"Accept": ACCEPT})
    assert fresh.status == 200 and "x-registry-proxy-stale" not in fresh.headers, fresh.headers

    up.stop()
    try:
        # The cached image still pulls, byte-exact.
        pull(skopeo, proxy_registry, "down/team/app:v1", tmp_path / "offline")
        assert_same_image(tmp_path / "offline", img)

        res = proxy_registry.request("GET", "/v2/down/team/app/manifests/v1", {"Accept": ACCEPT})
        assert res.status == 200, (res.status, res.body)
        assert res.body == img.manifest
        assert res.headers.get("docker-content-digest") == img.digest
        assert res.headers.get("x-registry-proxy-stale") == "true", res.headers
        assert res.headers.get("warning", "").startswith("110"), res.headers
        head = proxy_registry.request("HEAD", "/v2/down/team/app/manifests/v1", {"Accept": ACCEPT})
        assert head.status == 200 and head.headers.get("x-registry-proxy-stale") == "true", head.headers
        by_digest = proxy_registry.request("GET", f"/v2/down/team/app/manifests/{img.digest}",
                                           {"Accept": ACCEPT})
        assert by_digest.status == 200 and by_digest.body == img.manifest

        # Never cached: a tag, a repository, a blob. 502 with the OCI code of an upstream
        # failure, and a message saying what is missing and why.
        for path in ("/v2/down/team/app/manifests/v2", "/v2/down/team/never/manifests/v1",
                     f"/v2/down/team/app/blobs/{other.layer_digests[0]}"):
            res = proxy_registry.request("GET", path, {"Accept": ACCEPT})
            assert res.status == 502, (path, res.status, res.body)
            code, message = oci_error(res)
            assert code == "UNKNOWN", (path, res.body)
            assert "not cached" in message and "upstream cannot be read" in message, (path, message)
        failed = skopeo.run("copy", "--src-tls-verify=false", "docker://"
                            f"{proxy_registry.host}/down/team/app:v2", f"oci:{tmp_path / 'v2'}:pulled",
                            check=False)
        # skopeo shows the status, not the body, of a 5xx.
        assert failed.returncode != 0 and "502" in failed.stderr, skopeo.describe(failed)
    finally:
        up.start()

    # Back up: the tag is checked again (no stale mark) and the missing tag pulls.
    res = proxy_registry.request("GET", "/v2/down/team/app/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 200 and "x-registry-proxy-stale" not in res.headers, res.headers
    pull(skopeo, proxy_registry, "down/team/app:v2", tmp_path / "v2back")
    assert_same_image(tmp_path / "v2back", other)


# ---- 3. htpasswd upstream: credentials, never shown; wrong ones fail clearly ------------


def test_upstream_with_credentials(proxy_registry, auth_upstream, registry_bin, skopeo, tmp_path):
    up = auth_upstream
    layout, img = image_layout(tmp_path / "src", "proxy-app-auth")
    seed(skopeo, up, layout, "v1", "team/app:v1")

    # Made by the CLI, the password on stdin.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["REGISTRY_URL"] = proxy_registry.url
    cli = subprocess.run(
        [str(registry_bin), "project", "create", "authok", "--proxy-url", up.url,
         "--proxy-username", UP_USER, "--proxy-password-stdin", "--freshness-secs", "60"],
        input=UP_PASS + "\n", capture_output=True, text=True, env=env, timeout=30)
    assert cli.returncode == 0, (cli.stdout, cli.stderr)
    assert UP_PASS not in cli.stdout + cli.stderr

    res = proxy_registry.request("GET", "/api/v1/projects/authok")
    assert res.status == 200, res.body
    proxy = res.json()["proxy"]
    assert proxy["upstreamUrl"] == up.url
    assert proxy["username"] == UP_USER
    assert proxy["hasPassword"] is True
    assert proxy["freshnessSecs"] == 60
    assert "password" not in proxy and "sealedPassword" not in proxy, proxy
    listing = proxy_registry.request("GET", "/api/v1/projects")
    assert listing.status == 200
    for body in (res.body, listing.body):
        assert UP_PASS.encode() not in body

    m0 = up.mark()
    pull(skopeo, proxy_registry, "authok/team/app:v1", tmp_path / "pulled")
    assert_same_image(tmp_path / "pulled", img)
    up.settle(quiet=1.0)
    ok = up.select(since=m0, status=200, repository="team/app")
    assert any(r.kind == "blob" for r in ok) and any(r.kind == "manifest" for r in ok), up.describe(m0)

    # A wrong password: the pull fails with the upstream's refusal, never the password.
    create_proxy(proxy_registry, "authbad", up.url, username=UP_USER, password="wrong-pw-123")
    res = proxy_registry.request("GET", "/v2/authbad/team/app/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 502, (res.status, res.body)
    code, message = oci_error(res)
    assert code == "UNKNOWN", res.body
    assert "refused the credentials" in message and "401" in message, message
    assert "wrong-pw-123" not in res.body.decode()
    failed = skopeo.run("copy", "--src-tls-verify=false",
                        f"docker://{proxy_registry.host}/authbad/team/app:v1",
                        f"oci:{tmp_path / 'bad'}:pulled", check=False)
    assert failed.returncode != 0 and "502" in failed.stderr, skopeo.describe(failed)

    # No credentials at all against an upstream that wants them.
    create_proxy(proxy_registry, "authnone", up.url)
    res = proxy_registry.request("GET", "/v2/authnone/team/app/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 502, (res.status, res.body)
    assert "needs credentials" in oci_error(res)[1], res.body


# ---- 4. concurrent GETs of one uncached blob: one upstream fetch -----------------------


def test_concurrent_blob_gets_share_one_upstream_fetch(proxy_registry, upstream, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    big = os.urandom(20 * 1024 * 1024)
    img = layout.add_image([{"data/big.bin": big}])
    layout.tag(img.descriptor, "v1")
    layer, digest = img.layers[0], img.layer_digests[0]
    assert len(layer) > 20 * 1024 * 1024
    seed(skopeo, upstream, layout, "v1", "team/big:v1")
    create_proxy(proxy_registry, "bighub", upstream.url)

    url = f"{proxy_registry.url}/v2/bighub/team/big/blobs/{digest}"
    n = 8
    barrier = threading.Barrier(n)
    results: list = [None] * n

    spans: list = [None] * n

    def get(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            start = time.monotonic()
            with urllib.request.urlopen(url, timeout=120) as res:
                results[i] = (res.status, res.read())
            spans[i] = (start, time.monotonic())
        except Exception as e:  # reported below
            results[i] = (type(e).__name__, str(e).encode())

    m0 = upstream.mark()
    threads = [threading.Thread(target=get, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    upstream.settle(quiet=1.0)
    why = upstream.describe(m0)
    for i, (status, body) in enumerate(results):
        assert status == 200, (i, status, body[:500], why)
        assert len(body) == len(layer) and hashlib.sha256(body).digest() == hashlib.sha256(layer).digest(), (
            i, len(body), why)
    # They were concurrent (all sent before the first one finished): one upstream GET is
    # then the shared fetch, not the cache answering requests that came one after another.
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert upstream.count("GET", "blob", since=m0, reference=digest) == 1, why
    assert upstream.select(since=m0, method="GET", kind="blob", reference=digest)[0].status == 200, why

    # Later GETs come from the cache.
    m1 = upstream.mark()
    res = proxy_registry.request("GET", f"/v2/bighub/team/big/blobs/{digest}")
    assert res.status == 200 and res.body == layer
    upstream.settle()
    assert upstream.select(since=m1) == [], upstream.describe(m1)


# ---- 5. multi-arch: only the chosen platform's blobs are fetched -----------------------


def test_one_platform_of_an_index(proxy_registry, upstream, skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    amd = layout.add_image(sample_layers("proxy-multi-amd64"), architecture="amd64")
    arm = layout.add_image(sample_layers("proxy-multi-arm64"), architecture="arm64")
    index, index_desc = layout.add_index([amd, arm])
    layout.tag(index_desc, "v1")
    seed(skopeo, upstream, layout, "v1", "team/multi:v1", "--all")
    create_proxy(proxy_registry, "multihub", upstream.url)

    m0 = upstream.mark()
    skopeo.run("--override-arch", "arm64", "--override-os", "linux", "copy", "--src-tls-verify=false",
               f"docker://{proxy_registry.host}/multihub/team/multi:v1", f"oci:{tmp_path / 'arm'}:pulled")
    assert_same_image(tmp_path / "arm", arm)
    upstream.settle(quiet=1.5)  # give any background fetch (scanner) time to show
    why = upstream.describe(m0)
    gets = blob_gets(upstream, m0, "team/multi")
    assert set(blobs_of(arm)) <= set(gets), why
    assert not set(blobs_of(amd)) & set(gets), why
    manifests = {r.reference for r in upstream.select(since=m0, kind="manifest", repository="team/multi")}
    assert arm.digest in manifests and amd.digest not in manifests, why

    # The index itself is served byte-exact by tag.
    res = proxy_registry.request("GET", "/v2/multihub/team/multi/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 200 and res.body == index
    assert res.headers["content-type"] == OCI_INDEX


# ---- 6. proxy projects are read-only -----------------------------------------------------


def test_push_into_a_proxy_project_is_denied(proxy_registry, upstream, skopeo, tmp_path):
    layout, img = image_layout(tmp_path / "src", "proxy-readonly")
    create_proxy(proxy_registry, "rohub", upstream.url)
    m0 = upstream.mark()

    res = skopeo.run("copy", "--dest-tls-verify=false", f"oci:{layout.root}:v1",
                     f"docker://{proxy_registry.host}/rohub/team/app:v1", check=False)
    assert res.returncode != 0
    assert "denied" in res.stderr.lower() and "proxy project" in res.stderr, skopeo.describe(res)

    start = proxy_registry.request("POST", "/v2/rohub/team/app/blobs/uploads/")
    assert start.status == 403, (start.status, start.body)
    assert oci_error(start)[0] == "DENIED"
    put = proxy_registry.request("PUT", "/v2/rohub/team/app/manifests/v1",
                                 {"Content-Type": OCI_MANIFEST}, img.manifest)
    assert put.status == 403, (put.status, put.body)
    code, message = oci_error(put)
    assert code == "DENIED" and "read-only" in message, put.body
    upstream.settle()
    assert upstream.select(since=m0, method="PUT") == [] and upstream.select(since=m0, method="POST") == []
    assert proxy_registry.request("HEAD", f"/v2/rohub/team/app/manifests/{img.digest}",
                                  {"Accept": ACCEPT}).status == 404


# ---- 7. prefetch, then serve with the upstream gone -------------------------------------


def test_prefetch_then_offline(proxy_registry, own_upstream, registry_bin, skopeo, tmp_path):
    up = own_upstream
    layout = Layout(tmp_path / "src")
    amd = layout.add_image(sample_layers("proxy-prefetch-amd64"), architecture="amd64")
    arm = layout.add_image(sample_layers("proxy-prefetch-arm64"), architecture="arm64")
    index, index_desc = layout.add_index([amd, arm])
    layout.tag(index_desc, "v1")
    seed(skopeo, up, layout, "v1", "team/app2:v1", "--all")
    create_proxy(proxy_registry, "pf", up.url)

    log_offset = len(proxy_registry.log_path.read_bytes())
    m0 = up.mark()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["REGISTRY_URL"] = proxy_registry.url
    cli = subprocess.run([str(registry_bin), "proxy", "prefetch", "pf", "team/app2:v1"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert cli.returncode == 0, (cli.stdout, cli.stderr)

    # Wait for the fill job: the worker logs "proxy fill done" once every blob is stored.
    deadline = time.monotonic() + PREFETCH_TIMEOUT
    while True:
        log = ANSI.sub("", proxy_registry.log_path.read_bytes()[log_offset:].decode(errors="replace"))
        done = [line for line in log.splitlines() if "proxy fill done" in line and "fill-image" in line]
        if done:
            break
        assert time.monotonic() < deadline, (
            f"prefetch not done in {PREFETCH_TIMEOUT}s\n{up.describe(m0)}\n--- registry log ---\n{log}")
        time.sleep(0.2)
    up.settle()
    why = up.describe(m0)
    gets = blob_gets(up, m0, "team/app2")
    assert set(blobs_of(amd)) <= set(gets), why  # linux/amd64, the default platform
    assert not set(blobs_of(arm)) & set(gets), why

    up.stop()
    # Offline: the blobs are there without the upstream (a HEAD would need it otherwise).
    for digest in blobs_of(amd):
        head = proxy_registry.request("HEAD", f"/v2/pf/team/app2/blobs/{digest}")
        assert head.status == 200, (digest, head.status, head.body)
    skopeo.run("--override-arch", "amd64", "--override-os", "linux", "copy", "--src-tls-verify=false",
               f"docker://{proxy_registry.host}/pf/team/app2:v1", f"oci:{tmp_path / 'offline'}:pulled")
    assert_same_image(tmp_path / "offline", amd)
    res = proxy_registry.request("GET", "/v2/pf/team/app2/manifests/v1", {"Accept": ACCEPT})
    assert res.status == 200 and res.body == index

    # Prefetch into a project that is not a proxy: refused.
    proxy_registry.request("POST", "/api/v1/projects", {"Content-Type": "application/json"},
                           json.dumps({"name": "plainpf"}).encode())
    res = proxy_registry.request("POST", "/api/v1/projects/plainpf/proxy/prefetch",
                                 {"Content-Type": "application/json"},
                                 json.dumps({"images": ["team/app2:v1"]}).encode())
    assert res.status == 400, (res.status, res.body)
