#!/usr/bin/env python3
"""Lambda cold-start benchmark: init time, cold and warm invocation, and peak RSS of the
three function binaries (target/lambda/registry-{api,scan,webhook}/bootstrap, built by
`infra/build.sh x86_64`), each run as a process against a fake Lambda Runtime API on
127.0.0.1 and the LocalStack backend. Prints a table; not a test.

Run: localstack/start && source localstack/env && tests/.venv/bin/python tests/bench/lambda-cold-start.py [--runs N]
Standard library only; `openssl` makes the API function's token signing key.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ["registry-api", "registry-scan", "registry-webhook", "registry-proxy-fill"]
PREFIX = "/2018-06-01/runtime"
TIMEOUT = 30.0


class Run:
    """One process's view of the runtime API: events to hand out and what came back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: queue.Queue = queue.Queue()
        self.cond = threading.Condition()
        self.init_at: float | None = None
        self.polls = 0
        self.handed: dict[str, float] = {}
        self.responded: dict[str, float] = {}
        self.bodies: dict[str, bytes] = {}
        self.errors: list[str] = []
        self.closed = False

    def wait(self, pred, proc: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while not pred():
                if self.errors:
                    raise RuntimeError(f"{what}: {self.errors[0]}")
                if proc.poll() is not None:
                    raise RuntimeError(f"{what}: process exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: timed out after {TIMEOUT:.0f} s")
                self.cond.wait(0.05)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass  # quiet

    def reply(self, status: int, body: bytes = b"{}", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        run: Run = self.server.run
        if self.path != f"{PREFIX}/invocation/next":
            return self.reply(404)
        with run.cond:
            run.init_at = run.init_at or time.perf_counter()
            run.polls += 1
            run.cond.notify_all()
        while True:
            try:
                request_id, event = run.events.get(timeout=0.2)
                break
            except queue.Empty:
                if run.closed:  # the process was stopped: drop the connection
                    self.close_connection = True
                    return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 30) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn":
                f"arn:aws:lambda:us-east-1:000000000000:function:{run.name}",
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Sampled=0",
        }
        body = json.dumps(event).encode()
        with run.cond:
            run.handed[request_id] = time.perf_counter()
        self.reply(200, body, headers)

    def do_POST(self) -> None:
        run: Run = self.server.run
        now = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path[len(PREFIX):].strip("/").split("/")
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            kind = parts[2]
        elif parts == ["init", "error"]:
            kind = "init error"
        else:
            return self.reply(404)
        with run.cond:
            if kind == "response":
                run.bodies[parts[1]] = body
                run.responded[parts[1]] = now
            else:
                run.errors.append(f"{'/'.join(parts)}: {body.decode(errors='replace')}")
            run.cond.notify_all()
        self.reply(202, b'{"status":"OK"}')


def api_event() -> dict:
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/v2/", "rawQueryString": "",
        "headers": {"host": "registry.example.com", "user-agent": "lambda-cold-start"},
        "requestContext": {
            "accountId": "000000000000", "apiId": "bench", "domainName": "registry.example.com",
            "http": {"method": "GET", "path": "/v2/", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "lambda-cold-start"},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }


def scheduled_event() -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": "us-east-1",
            "resources": [], "detail": {}}


# Function: (event maker, check of the response). The API answers 401: authentication is on.
CASES = {
    "registry-api": (api_event, lambda r: r.get("statusCode") == 401),
    "registry-scan": (lambda: {"Records": []}, lambda r: r == {"batchItemFailures": []}),
    "registry-webhook": (scheduled_event, lambda r: isinstance(r.get("published"), int)),
    "registry-proxy-fill": (lambda: {"Records": []}, lambda r: r == {"batchItemFailures": []}),
}


def signing_key() -> str:
    return subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                           "ec_paramgen_curve:P-256"], check=True, capture_output=True,
                          text=True).stdout


def function_env(name: str, port: int, key: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "REGISTRY_"))}
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"bench/{uuid.uuid4().hex}",
        "REGISTRY_LOG": "warn",
    })
    if name == "registry-api":
        env["REGISTRY_ADMIN_PASSWORD"] = secrets.token_urlsafe(16)
        env["REGISTRY_TOKEN_SIGNING_KEY"] = key
    return env


def invoke(run: Run, proc: subprocess.Popen, event: dict, check, what: str) -> float:
    request_id = str(uuid.uuid4())
    run.events.put((request_id, event))
    run.wait(lambda: request_id in run.responded, proc, what)
    response = json.loads(run.bodies[request_id])
    if not check(response):
        raise RuntimeError(f"{what}: unexpected response {response}")
    return (run.responded[request_id] - run.handed[request_id]) * 1000


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(server, name: str, binary: Path, key: str, log: Path) -> dict:
    make_event, check = CASES[name]
    run = Run(name)
    server.run = run
    env = function_env(name, server.server_address[1], key)
    with open(log, "wb") as out:
        spawned = time.perf_counter()
        proc = subprocess.Popen([str(binary)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        cold = invoke(run, proc, make_event(), check, f"{name} cold invocation")
        warm = invoke(run, proc, make_event(), check, f"{name} warm invocation")
        run.wait(lambda: run.polls == 3, proc, f"{name} back to /next")
        rss = peak_rss_mib(proc.pid)
    except RuntimeError as e:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"FAILED: {e}\n--- last lines of {name}'s output ---\n{tail}")
    finally:
        run.closed = True
        stop(proc)
    return {"init": (run.init_at - spawned) * 1000, "cold": cold, "warm": warm, "rss": rss}


def zipped_mib(binary: Path) -> float:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(binary, "bootstrap")
    return len(buf.getvalue()) / 2**20


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per function (default 5)")
    args = parser.parse_args()
    binaries = {n: ROOT / "target" / "lambda" / n / "bootstrap" for n in FUNCTIONS}
    missing = [str(p.relative_to(ROOT)) for p in binaries.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `infra/build.sh x86_64` first")
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("AWS_ENDPOINT_URL is unset: `localstack/start && source localstack/env`")

    key = signing_key()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.run = Run("none")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lambda-cold-start-") as tmp:
        for name, binary in binaries.items():
            results = []
            for i in range(args.runs):
                results.append(one_run(server, name, binary, key, Path(tmp) / f"{name}-{i}.log"))
                print(f"{name} run {i + 1}/{args.runs}: init {results[-1]['init']:.1f} ms",
                      file=sys.stderr)
            rows.append([
                name, f"{binary.stat().st_size / 2**20:.1f}", f"{zipped_mib(binary):.1f}",
                spread([r["init"] for r in results]),
                f"{statistics.median(r['cold'] for r in results):.1f}",
                f"{statistics.median(r['warm'] for r in results):.1f}",
                f"{statistics.median(r['rss'] for r in results):.1f}",
            ])
    server.shutdown()

    header = ["function", "binary MiB", "zipped MiB", "init ms median (min–max)",
              "cold invoke ms", "warm invoke ms", "peak RSS MiB"]
    widths = [max(len(str(r[c])) for r in [header] + rows) for c in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w)
                        for c, (v, w) in enumerate(zip(r, widths))))
    print(f"\n{args.runs} runs each; medians. Process-level figures on this machine against "
          "LocalStack; real Lambda adds sandbox/runtime setup (not measured).")


if __name__ == "__main__":
    main()
