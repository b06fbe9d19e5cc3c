"""End-to-end: the registry killed (SIGKILL) in the middle of an upload leaves no half blob
visible; after a restart the upload resumes from its last accepted chunk and verifies."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time

CHUNK = 1024 * 1024


def _start_upload(reg, repo):
    res = reg.request("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
    assert res.status == 202, res
    return res.headers["location"]


def test_sigkill_mid_upload_leaves_no_half_blob_and_upload_resumes(registry_factory):
    data = os.urandom(8 * CHUNK)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = "e2e/crash"

    first = registry_factory().start()
    location = _start_upload(first, repo)
    # One accepted chunk.
    res = first.request(
        "PATCH", location,
        {"Content-Range": f"0-{CHUNK - 1}", "Content-Type": "application/octet-stream"},
        data=data[:CHUNK],
    )
    assert res.status == 202 and res.headers["range"] == f"0-{CHUNK - 1}"

    # A second chunk announced at full length but cut off halfway: the process dies mid-body.
    with socket.create_connection(("127.0.0.1", first.port)) as s:
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: {first.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data) - CHUNK}\r\n"
            f"Content-Range: {CHUNK}-{len(data) - 1}\r\n\r\n"
        )
        s.sendall(head.encode() + data[CHUNK:3 * CHUNK])
        time.sleep(0.3)
        first.stop(signal.SIGKILL)

    second = registry_factory(first.data_dir).start()
    # Nothing of the blob is visible, in the repository or anywhere on disk.
    assert second.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 404
    hexd = digest.split(":")[1]
    assert not (first.data_dir / "blobs" / "sha256" / hexd[:2] / hexd).exists()

    # The session kept its last accepted offset; the client resumes from there.
    status = second.request("GET", location)
    assert status.status == 204 and status.headers["range"] == f"0-{CHUNK - 1}"
    res = second.request(
        "PATCH", location,
        {"Content-Range": f"{CHUNK}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
        data=data[CHUNK:],
    )
    assert res.status == 202 and res.headers["range"] == f"0-{len(data) - 1}"
    done = second.request("PUT", f"{location}?digest={digest}", data=b"")
    assert done.status == 201 and done.headers["docker-content-digest"] == digest
    got = second.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert got.status == 200 and got.body == data
