"""Processes of the AWS backend for the end-to-end tests: the local binary over LocalStack,
and the Lambda harness (API function behind the 6 MB gateway stand-in, plus the upload
endpoint). They need `localstack/start && source localstack/env`; without it they fail."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT, RegistryProcess, free_port

HARNESS_BIN = Path(os.environ.get("HARNESS_BIN", REPO_ROOT / "target" / "debug" / "lambda-harness"))


def require_localstack() -> None:
    if not os.environ.get("AWS_ENDPOINT_URL"):
        pytest.fail("AWS_ENDPOINT_URL unset: run `localstack/start && source localstack/env`",
                    pytrace=False)
    try:
        urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/_localstack/health", timeout=5)
    except OSError as e:
        pytest.fail(f"LocalStack unreachable at {os.environ['AWS_ENDPOINT_URL']}: {e}", pytrace=False)


def aws_env(prefix: str | None = None) -> dict:
    env = dict(os.environ, REGISTRY_BACKEND="aws", REGISTRY_LOG="info")
    env["REGISTRY_S3_PREFIX"] = prefix or f"e2e-{uuid.uuid4().hex[:12]}/"
    # Each process has its own S3 prefix: a shared scan queue would hand one process's
    # images to another that cannot read them. Scanning tests bring their own queues.
    env.pop("REGISTRY_SCAN_QUEUE_URL", None)
    env.pop("REGISTRY_SCAN_DLQ_URL", None)
    return env


class AwsRegistry(RegistryProcess):
    """The local binary with `--backend aws` (data in S3/DynamoDB on LocalStack)."""

    def __init__(self, binary: Path, log_path: Path, env: dict):
        super().__init__(binary, log_path.parent, log_path)
        self.env = env
        self.authenticated = bool(env.get("REGISTRY_ADMIN_PASSWORD"))

    def start(self) -> "AwsRegistry":
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--backend", "aws", "--addr", self.host],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            )
        self._wait_ready()
        return self


class LambdaHarness(RegistryProcess):
    """The API function behind the gateway stand-in (`port`) and the upload endpoint."""

    def __init__(self, log_path: Path, env: dict):
        if not os.access(HARNESS_BIN, os.X_OK):
            pytest.fail(f"{HARNESS_BIN} missing: run `cargo build -p registry-api`", pytrace=False)
        super().__init__(HARNESS_BIN, log_path.parent, log_path)
        self.env = env
        self.upload_port: int | None = None

    def start(self) -> "LambdaHarness":
        self.port, self.upload_port = free_port(), free_port()
        env = dict(self.env, HARNESS_API_ADDR=f"127.0.0.1:{self.port}",
                   HARNESS_UPLOAD_ADDR=f"127.0.0.1:{self.upload_port}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(self.binary)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        self._wait_ready()
        return self


def stop_all(procs) -> None:
    for p in procs:
        if p.running():
            p.stop(signal.SIGTERM)


def wait_until(predicate, timeout: float = 30.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
