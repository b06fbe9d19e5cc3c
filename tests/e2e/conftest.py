"""pytest fixtures for the end-to-end suite: start the real `registry` binary on a free
loopback port with a fresh data dir, talk to it over plain HTTP, and drive skopeo against it.

Env: REGISTRY_BIN (default <repo>/target/debug/registry), REGISTRY_LOG (default
`info`: one log line per request, from the registry's own request logging).
skopeo always runs with --debug; its stderr (every HTTP request it made) is in the failure message.
"""

from __future__ import annotations

import json
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
from typing import Sequence

import pytest

from containers import Containers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "registry"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# The registry logs one line per request (method, path, status, latency) for failure reports.
DEFAULT_LOG = "info"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HttpResponse:
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class RegistryProcess:
    """One `registry` process over a data dir; can be stopped and started again on it."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, extra_args: Sequence[str] = ()):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        # More command-line arguments (e.g. `--admin-password pw`); with any, a 401 on `/v2/`
        # (authentication on) also counts as ready.
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> "RegistryProcess":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        last_error = None
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== starting {self.binary} on {self.host} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [
                        str(self.binary),
                        "--backend", "embedded",
                        "--addr", self.host,
                        "--data-dir", str(self.data_dir),
                        "--log", os.environ.get("REGISTRY_LOG", DEFAULT_LOG),
                        *self.extra_args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            try:
                self._wait_ready()
                return self
            except RuntimeError as e:
                last_error = e
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        raise RuntimeError(f"{last_error}\n--- registry log ---\n{self.log_text()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        # With authentication on (extra args, or an AWS process given an admin), /v2/ says 401.
        ready = (200, 401) if self.extra_args or getattr(self, "authenticated", False) else (200,)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited with {self.proc.returncode} before answering")
            try:
                if self.request("GET", "/v2/", timeout=2).status in ready:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"GET /v2/ did not answer {ready} within {START_TIMEOUT}s")

    def stop(self, sig=signal.SIGTERM) -> int:
        """Signals the process and waits; returns its exit code (SIGKILL after a timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"registry ignored {sig!r} for {STOP_TIMEOUT}s; killed")
        return self.proc.returncode

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, max_lines: int = 300) -> str:
        try:
            lines = ANSI.sub("", self.log_path.read_text(errors="replace")).splitlines()
        except FileNotFoundError:
            return "(no log)"
        if len(lines) > max_lines:
            lines = [f"... ({len(lines) - max_lines} earlier lines in {self.log_path})"] + lines[-max_lines:]
        return "\n".join(lines)

    def request(self, method: str, path: str, headers: dict | None = None,
                data: bytes | None = None, timeout: float = 60) -> HttpResponse:
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with _opener.open(req, timeout=timeout) as res:
                return HttpResponse(res.status, {k.lower(): v for k, v in res.headers.items()}, res.read())
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@pytest.fixture(scope="session")
def registry_bin() -> Path:
    binary = Path(os.environ.get("REGISTRY_BIN", DEFAULT_BIN))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"registry binary {binary} missing: run `cargo build -p registry-local` "
                    f"or set REGISTRY_BIN", pytrace=False)
    return binary


@pytest.fixture
def registry_factory(registry_bin, tmp_path, request):
    """Makes registry processes (not yet started) on fresh data dirs; stops them all at the end.
    Their logs are attached to the report of a failing test."""
    procs: list[RegistryProcess] = []
    request.node._registry_procs = procs

    def make(data_dir: Path | None = None, extra_args: Sequence[str] = ()) -> RegistryProcess:
        n = len(procs)
        if data_dir is None:
            data_dir = tmp_path / f"data{n}"
            data_dir.mkdir()
        proc = RegistryProcess(registry_bin, data_dir, tmp_path / f"registry{n}.log", extra_args)
        procs.append(proc)
        return proc

    yield make
    for p in procs:
        if p.running():
            p.stop()
            if p.proc.poll() is None:
                p.proc.kill()


@pytest.fixture
def registry(registry_factory) -> RegistryProcess:
    """A running registry on a free port with an empty data dir."""
    return registry_factory().start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for i, proc in enumerate(getattr(item, "_registry_procs", [])):
            report.sections.append((f"registry {i} log ({proc.log_path})", proc.log_text()))
    return report


# ---- skopeo --------------------------------------------------------------------------


class SkopeoError(AssertionError):
    pass


class Skopeo:
    """Runs skopeo with a private permissive policy, registries.conf, registries.d and auth file, so
    nothing on the machine (or its absence) changes what it does."""

    def __init__(self, cfg_dir: Path):
        if shutil.which("skopeo") is None:
            pytest.fail("skopeo not installed: run tests/install-deps.sh", pytrace=False)
        cfg_dir.mkdir(parents=True, exist_ok=True)
        self.policy = cfg_dir / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = cfg_dir / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.registries_d = cfg_dir / "registries.d"
        self.registries_d.mkdir(exist_ok=True)
        self.authfile = cfg_dir / "auth.json"
        self.authfile.write_text('{"auths": {}}\n')
        self.tmpdir = cfg_dir / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.authfile))

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [
            "skopeo", "--debug",
            "--policy", str(self.policy),
            "--registries-conf", str(self.registries_conf),  # hidden but honoured by skopeo 1.9
            "--registries.d", str(self.registries_d),
            "--tmpdir", str(self.tmpdir),
            *args,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and res.returncode != 0:
            raise SkopeoError(self.describe(res))
        return res

    @staticmethod
    def describe(res: subprocess.CompletedProcess, max_lines: int = 150) -> str:
        err = res.stderr.splitlines()
        if len(err) > max_lines:
            err = [f"... ({len(err) - max_lines} lines cut)"] + err[-max_lines:]
        return (f"$ {' '.join(res.args)}\nexit {res.returncode}\n--- stdout ---\n{res.stdout}"
                f"\n--- stderr (--debug) ---\n" + "\n".join(err))

    def copy(self, src: str, dest: str, *extra: str) -> subprocess.CompletedProcess:
        return self.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dest)

    def inspect(self, ref: str, *extra: str, check: bool = True):
        res = self.run("inspect", "--tls-verify=false", *extra, ref, check=check)
        return res

    def inspect_json(self, ref: str, *extra: str) -> dict:
        return json.loads(self.inspect(ref, *extra).stdout)

    def list_tags(self, ref: str) -> dict:
        return json.loads(self.run("list-tags", "--tls-verify=false", ref).stdout)

    def delete(self, ref: str) -> subprocess.CompletedProcess:
        return self.run("delete", "--tls-verify=false", ref)


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo-config"))


# ---- podman and buildah --------------------------------------------------------------


@pytest.fixture
def containers(tmp_path):
    """Makes `Containers` (podman/buildah over private storage) under the test's temp dir."""
    made: list[Containers] = []

    def make(name: str) -> Containers:
        made.append(Containers(tmp_path / name))
        return made[-1]

    yield make
    for c in made:
        c.close()
