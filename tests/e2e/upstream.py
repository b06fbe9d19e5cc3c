"""An upstream registry for the proxy-project tests: Debian's `docker-registry` (CNCF
distribution 2.8) on a free loopback port, with its own config file and storage under a
temp dir (never /etc/docker/registry/config.yml), optionally behind htpasswd Basic auth.

It can be stopped and started again on the same port and storage (the upstream going
down and coming back), and it counts the requests it received: distribution writes one
Apache-style access-log line per finished request to its output, e.g.

    127.0.0.1 - - [28/Nov/2026:16:38:51 +0000] "GET /v2/a/b/manifests/v1 HTTP/1.1" 404 92 "" "registry-proxy/1"

which `requests()` parses into `Request(method, uri, status, user_agent, kind, repository,
reference)`; `kind` is `manifest`, `blob`, `upload`, `tags`, `catalog`, `base` (`/v2/`),
`token` or `other`. `mark()` is the number of requests logged so far, so a test counts what
one step caused with `count(..., since=mark)`. A line is written when the response is
finished, so call `settle()` before counting.

Used by tests/e2e/test_proxy.py and tests/bench/proxy-pull.py (no pytest needed here).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BINARY = os.environ.get("UPSTREAM_REGISTRY_BIN", "/usr/bin/docker-registry")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# The access log line of gorilla/handlers (Apache combined format).
ACCESS_LINE = re.compile(
    r'^(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] '
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)"\s*$'
)
# The structured line distribution writes for the same request (text formatter); only
# used to check that the access-log lines were not lost (see `self_check`).
COMPLETED_LINE = re.compile(r'msg="response completed( with error)?".*http\.request\.method=(?P<method>[A-Z]+)')
NAME = r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
ROUTES = [
    ("base", re.compile(r"^/v2/?$")),
    ("catalog", re.compile(r"^/v2/_catalog$")),
    ("upload", re.compile(rf"^/v2/{NAME}/blobs/uploads(?:/(?P<ref>[^/]*))?$")),
    ("blob", re.compile(rf"^/v2/{NAME}/blobs/(?P<ref>[a-z0-9+._-]+:[a-zA-Z0-9=_-]+)$")),
    ("manifest", re.compile(rf"^/v2/{NAME}/manifests/(?P<ref>[^/]+)$")),
    ("tags", re.compile(rf"^/v2/{NAME}/tags/list$")),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Request:
    method: str
    uri: str
    status: int
    user_agent: str
    user: str
    kind: str
    repository: str | None
    reference: str | None  # tag or digest (manifests), digest (blobs), upload id

    def __str__(self) -> str:
        return f"{self.method} {self.uri} -> {self.status} ({self.user_agent})"


def classify(uri: str) -> tuple[str, str | None, str | None]:
    path = urllib.request.unquote(uri.split("?", 1)[0])
    for kind, pattern in ROUTES:
        m = pattern.match(path)
        if m:
            groups = m.groupdict()
            return kind, groups.get("repo"), groups.get("ref")
    if "token" in path:
        return "token", None, None
    return "other", None, None


def parse_access_log(text: str) -> list[Request]:
    out = []
    for line in text.splitlines():
        m = ACCESS_LINE.match(line)
        if not m:
            continue
        kind, repo, ref = classify(m["uri"])
        out.append(Request(m["method"], m["uri"], int(m["status"]), m["ua"], m["user"], kind, repo, ref))
    return out


class Upstream:
    """One `docker-registry` process over a storage dir; stop() and start() keep the port
    and the storage. `auth=(user, password)` puts htpasswd Basic auth in front."""

    def __init__(self, workdir: Path, auth: tuple[str, str] | None = None, name: str = "upstream"):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"{BINARY} missing: apt-get install docker-registry (tests/install-deps.sh)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.auth = auth
        self.storage = self.workdir / "storage"
        self.storage.mkdir(exist_ok=True)
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / f"{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._write_config()

    # ---- process --------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _write_config(self) -> None:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            "  secret: e2e-upstream-secret",
        ]
        if self.auth is not None:
            if shutil.which("htpasswd") is None:
                raise RuntimeError("htpasswd missing: apt-get install apache2-utils")
            user, password = self.auth
            entry = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True,
                                   text=True, check=True).stdout.strip()
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(entry + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: e2e-upstream", f"    path: {htpasswd}"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self) -> "Upstream":
        assert not self.running(), "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"===== starting {BINARY} on {self.host} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [BINARY, "serve", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{BINARY} exited with {self.proc.returncode}\n{self.log_text()}")
            try:
                if self.ping() in (200, 401):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.url}/v2/ did not answer within {START_TIMEOUT}s\n{self.log_text()}")

    def ping(self) -> int:
        try:
            with urllib.request.urlopen(self.url + "/v2/", timeout=2) as res:
                return res.status
        except urllib.error.HTTPError as e:
            return e.code

    def stop(self) -> None:
        """Stops the process and waits until the port refuses connections."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.host} still accepts connections after stop()")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.running():
            self.stop()

    # ---- the request log ------------------------------------------------------------

    def log_text(self, max_lines: int = 120, verbose: bool = False) -> str:
        """The log's tail; unless `verbose`, without distribution's structured per-request
        lines (the access-log line says the same, shorter)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        if not verbose:
            lines = [line for line in lines
                     if not COMPLETED_LINE.search(line) and 'msg="authorized request"' not in line]
        if len(lines) > max_lines:
            lines = [f"... ({len(lines) - max_lines} earlier lines in {self.log_path})"] + lines[-max_lines:]
        return "\n".join(lines)

    def requests(self, since: int = 0) -> list[Request]:
        """Every request logged so far (from the `since`-th on)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return parse_access_log(text)[since:]

    def mark(self) -> int:
        """The number of requests logged so far: pass it as `since` to count what follows."""
        self.settle()
        return len(self.requests())

    def settle(self, quiet: float = 0.4, timeout: float = 15.0) -> None:
        """Waits until the log has not grown for `quiet` seconds (requests in flight
        finished and written)."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if size != last:
                last, since = size, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def select(self, since: int = 0, method: str | None = None, kind: str | None = None,
               repository: str | None = None, reference: str | None = None,
               status: int | None = None, user_agent: str | None = None) -> list[Request]:
        out = []
        for r in self.requests(since):
            if method and r.method != method:
                continue
            if kind and r.kind != kind:
                continue
            if repository and r.repository != repository:
                continue
            if reference and r.reference != reference:
                continue
            if status is not None and r.status != status:
                continue
            if user_agent is not None and not r.user_agent.startswith(user_agent):
                continue
            out.append(r)
        return out

    def count(self, method: str, kind: str, **filters) -> int:
        return len(self.select(method=method, kind=kind, **filters))

    def summary(self, since: int = 0, repository: str | None = None) -> collections.Counter:
        """(method, kind, status) → count, for reports."""
        return collections.Counter(
            (r.method, r.kind, r.status) for r in self.requests(since)
            if repository is None or r.repository == repository
        )

    def describe(self, since: int = 0, max_lines: int = 80) -> str:
        """The requests since `since`, one per line, and the log's tail: for failure messages."""
        reqs = self.requests(since)
        lines = [str(r) for r in reqs[-max_lines:]]
        return (f"--- {self.name} ({self.url}) requests since #{since}: {len(reqs)} ---\n"
                + "\n".join(lines) + f"\n--- {self.name} log tail ---\n" + self.log_text(40))

    def self_check(self, require_requests: bool = True) -> None:
        """The access log and distribution's own "response completed" lines agree on how
        many requests were served (so a format change cannot make counts silently zero).
        Requests refused by the htpasswd check (401) have no "response completed" line."""
        self.settle()
        text = self.log_path.read_text(errors="replace")
        access = len([r for r in parse_access_log(text) if r.status != 401])
        completed = len(COMPLETED_LINE.findall(text))
        assert access > 0 or not require_requests, f"no access-log line parsed in {self.log_path}:\n{self.log_text(40)}"
        assert access == completed, (
            f"{access} access-log lines (not 401) but {completed} 'response completed' lines in "
            f"{self.log_path}:\n{self.log_text(60, verbose=True)}")
