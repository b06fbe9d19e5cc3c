"""Proxy projects (pull-through cache): what a pull costs the upstream, and how fast the
cache answers compared with the upstream itself.

Starts an upstream registry (Debian's `docker-registry`, distribution 2.8, through
tests/e2e/upstream.py) and the `registry` binary on fresh temp dirs, seeds a 5-layer image
(random layers of 1, 2, 4, 8 and 16 MiB) into the upstream with skopeo, makes a proxy
project of it, then prints:

- upstream requests (from the upstream's access log: HEAD manifest, GET manifest, GET blob,
  token, other) and wall time of a first pull through the proxy (cold cache), a second one
  (tag fresh), and a pull through a second project with `freshnessSecs: 0` (tag revalidated);
  pulls are `skopeo copy docker://… oci:<new dir>`;
- latency: the median of N skopeo pulls straight from the upstream vs through the proxy
  (cache hit), each into a new directory; and the median time of plain HTTP GETs of the
  manifest and the 5 layers, straight vs through the cache.

Not a test: it asserts nothing but that the pulls work. Run from the repository root:

    tests/.venv/bin/python tests/bench/proxy-pull.py [--bin PATH] [--runs N]

The binary is `--bin`, else $REGISTRY_BIN, else target/release/registry if it exists, else
target/debug/registry (a debug build is much slower: build with `cargo build --release -p
registry-local` for figures worth comparing). The registry runs with `--scan-on-push false`
so background scans do not share the CPU with the timed pulls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

from conftest import RegistryProcess  # noqa: E402
from ocilayout import OCI_INDEX, OCI_MANIFEST, Layout  # noqa: E402
from upstream import Upstream  # noqa: E402

LAYER_MIB = [1, 2, 4, 8, 16]
REPO = "bench/app"
PROJECT = "hub"
ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"


def default_binary() -> Path:
    if os.environ.get("REGISTRY_BIN"):
        return Path(os.environ["REGISTRY_BIN"])
    release = REPO_ROOT / "target" / "release" / "registry"
    return release if release.exists() else REPO_ROOT / "target" / "debug" / "registry"


class Skopeo:
    """skopeo with a private permissive policy (no --debug: it would slow the timed runs)."""

    def __init__(self, cfg: Path):
        cfg.mkdir(parents=True, exist_ok=True)
        self.policy = cfg / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = cfg / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.authfile = cfg / "auth.json"
        self.authfile.write_text('{"auths": {}}\n')
        self.tmp = cfg / "tmp"
        self.tmp.mkdir(exist_ok=True)

    def copy(self, src: str, dest: str) -> float:
        cmd = ["skopeo", "--policy", str(self.policy), "--registries-conf", str(self.registries_conf),
               "--tmpdir", str(self.tmp), "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               src, dest]
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env=dict(os.environ, REGISTRY_AUTH_FILE=str(self.authfile)))
        elapsed = time.perf_counter() - start
        if res.returncode != 0:
            raise SystemExit(f"$ {' '.join(cmd)}\nexit {res.returncode}\n{res.stderr}")
        return elapsed


def http_get(url: str, headers: dict | None = None) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as res:
        return res.read()


def timed_http_pull(base: str, repo: str, digests: list[str], expect: dict[str, bytes]) -> float:
    start = time.perf_counter()
    http_get(f"{base}/v2/{repo}/manifests/v1", {"Accept": ACCEPT})
    for d in digests:
        body = http_get(f"{base}/v2/{repo}/blobs/{d}")
        if body != expect[d]:
            raise SystemExit(f"{base}/v2/{repo}/blobs/{d}: wrong bytes")
    return time.perf_counter() - start


def counts(up: Upstream, since: int) -> dict[str, int]:
    up.settle(quiet=0.5)
    reqs = [r for r in up.requests(since) if r.user_agent.startswith("registry-proxy")]
    c = {"HEAD manifest": 0, "GET manifest": 0, "GET blob": 0, "token": 0, "other": 0}
    for r in reqs:
        key = f"{r.method} {r.kind}"
        if key in c:
            c[key] += 1
        elif r.kind == "token":
            c["token"] += 1
        else:
            c["other"] += 1
    return c


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, default=default_binary(), help="the registry binary")
    parser.add_argument("--runs", type=int, default=5, help="pulls per latency figure (median)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin} missing: cargo build --release -p registry-local (or --bin)")
    if shutil.which("skopeo") is None:
        raise SystemExit("skopeo missing: tests/install-deps.sh")

    work = Path(tempfile.mkdtemp(prefix="proxy-pull-bench-"))
    up = reg = None
    try:
        skopeo = Skopeo(work / "skopeo")
        layout = Layout(work / "src")
        img = layout.add_image([{f"data/layer{i}.bin": os.urandom(mib << 20)}
                                for i, mib in enumerate(LAYER_MIB)])
        layout.tag(img.descriptor, "v1")
        blobs = {d: data for d, data in zip(img.layer_digests, img.layers)}
        total_mib = sum(len(b) for b in img.layers) / (1 << 20)

        up = Upstream(work / "upstream", name="upstream").start()
        skopeo.copy(f"oci:{layout.root}:v1", f"docker://{up.host}/{REPO}:v1")

        (work / "data").mkdir()
        reg = RegistryProcess(args.bin, work / "data", work / "registry.log",
                              ["--outbound-allow", "127.0.0.0/8", "--scan-on-push", "false"])
        reg.start()
        for name, extra in ((PROJECT, {}), (PROJECT + "0", {"freshnessSecs": 0})):
            res = reg.request("POST", "/api/v1/projects", {"Content-Type": "application/json"},
                              json.dumps({"name": name, "proxy": {"upstreamUrl": up.url, **extra}}).encode())
            if res.status != 201:
                raise SystemExit(f"creating proxy project {name}: {res.status} {res.body!r}")

        proxied = f"docker://{reg.host}/{PROJECT}/{REPO}:v1"
        n = iter(range(10_000))
        rows = []
        for label, src in (("first pull (cold cache)", proxied),
                           ("second pull (tag fresh)", proxied),
                           ("freshnessSecs 0 project, 1st", f"docker://{reg.host}/{PROJECT}0/{REPO}:v1"),
                           ("freshnessSecs 0 project, 2nd", f"docker://{reg.host}/{PROJECT}0/{REPO}:v1")):
            mark = up.mark()
            elapsed = skopeo.copy(src, f"oci:{work / f'pull{next(n)}'}:v1")
            rows.append((label, counts(up, mark), elapsed))

        direct_skopeo, proxy_skopeo, direct_http, proxy_http = [], [], [], []
        for _ in range(args.runs):
            direct_skopeo.append(skopeo.copy(f"docker://{up.host}/{REPO}:v1", f"oci:{work / f'pull{next(n)}'}:v1"))
            proxy_skopeo.append(skopeo.copy(proxied, f"oci:{work / f'pull{next(n)}'}:v1"))
            direct_http.append(timed_http_pull(up.url, REPO, img.layer_digests, blobs))
            proxy_http.append(timed_http_pull(reg.url, f"{PROJECT}/{REPO}", img.layer_digests, blobs))
        mark = up.mark()
        timed_http_pull(reg.url, f"{PROJECT}/{REPO}", img.layer_digests, blobs)
        leaked = counts(up, mark)

        print(f"registry: {args.bin}")
        print(f"upstream: {up.url} (distribution 2.8, filesystem storage), image {REPO}:v1 = "
              f"{len(LAYER_MIB)} layers of {'+'.join(map(str, LAYER_MIB))} MiB ({total_mib:.1f} MiB gzip)")
        print()
        cols = ["HEAD manifest", "GET manifest", "GET blob", "token", "other"]
        print(f"{'upstream requests per pull':32}" + "".join(f"{c:>15}" for c in cols) + f"{'skopeo time':>14}")
        for label, c, elapsed in rows:
            print(f"{label:32}" + "".join(f"{c[k]:>15}" for k in cols) + f"{elapsed:>12.2f} s")
        print(f"(GET blob: the config and the {len(LAYER_MIB)} layers)")
        print()
        print(f"{f'latency, median of {args.runs}':38}{'upstream direct':>18}{'proxy (cache hit)':>20}")
        print(f"{'skopeo copy to a new oci dir':38}{median_ms(direct_skopeo):>18}{median_ms(proxy_skopeo):>20}")
        print(f"{'HTTP GET manifest + 5 layers':38}{median_ms(direct_http):>18}{median_ms(proxy_http):>20}")
        print(f"(upstream requests during a cache-hit HTTP pull: "
              f"{sum(leaked.values())}; {leaked})")
    finally:
        if reg is not None and reg.running():
            reg.stop()
        if up is not None:
            up.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
