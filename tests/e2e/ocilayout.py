"""Builds and reads OCI image layouts (image-spec v1.1 `oci-layout` directories) by hand,
so the e2e tests can feed skopeo exact, known bytes and compare what comes back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def make_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar (fixed mtime/owner) with the given regular files, parents included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


@dataclass
class Image:
    """One single-platform image written into a layout."""

    manifest: bytes
    digest: str
    config: bytes
    config_digest: str
    layers: list[bytes]
    layer_digests: list[str]
    architecture: str
    descriptor: dict = field(default_factory=dict)


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.index_entries: list[dict] = []

    def add_blob(self, data: bytes, media_type: str, **extra) -> dict:
        digest = sha256_digest(data)
        (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        desc.update(extra)
        return desc

    def add_image(
        self,
        layer_files: list[dict[str, bytes]],
        architecture: str = "amd64",
        os_name: str = "linux",
        env: list[str] | None = None,
    ) -> Image:
        """Writes gzip layers, a config and a manifest; returns what was written."""
        layers, layer_descs, diff_ids = [], [], []
        for files in layer_files:
            raw = make_tar(files)
            gz = gzip_bytes(raw)
            layers.append(gz)
            diff_ids.append(sha256_digest(raw))
            layer_descs.append(self.add_blob(gz, OCI_LAYER_GZIP))
        config_obj = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": architecture,
            "os": os_name,
            "config": {"Env": env or ["PATH=/bin"], "Cmd": ["/bin/hello"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"e2e layer {i}"} for i in range(len(diff_ids))],
        }
        config = canonical_json(config_obj)
        config_desc = self.add_blob(config, OCI_CONFIG)
        manifest_obj = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
            "annotations": {"org.opencontainers.image.description": f"e2e {architecture} image"},
        }
        manifest = json.dumps(manifest_obj, indent=2).encode()  # not canonical on purpose: bytes must survive
        desc = self.add_blob(manifest, OCI_MANIFEST)
        return Image(
            manifest=manifest,
            digest=desc["digest"],
            config=config,
            config_digest=config_desc["digest"],
            layers=layers,
            layer_digests=[d["digest"] for d in layer_descs],
            architecture=architecture,
            descriptor=desc,
        )

    def add_tar_image(self, tar_gz: bytes, diff_id: str, architecture: str = "amd64") -> Image:
        """Writes an image of one already-built gzip layer (a root filesystem tar)."""
        layer_desc = self.add_blob(tar_gz, OCI_LAYER_GZIP)
        config = canonical_json({
            "created": "2024-01-01T00:00:00Z", "architecture": architecture, "os": "linux",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        })
        config_desc = self.add_blob(config, OCI_CONFIG)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
                               "layers": [layer_desc]}, indent=2).encode()
        desc = self.add_blob(manifest, OCI_MANIFEST)
        return Image(manifest=manifest, digest=desc["digest"], config=config,
                     config_digest=config_desc["digest"], layers=[tar_gz],
                     layer_digests=[layer_desc["digest"]], architecture=architecture, descriptor=desc)

    def add_index(self, images: list[Image], os_name: str = "linux") -> tuple[bytes, dict]:
        index_obj = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                dict(img.descriptor, platform={"architecture": img.architecture, "os": os_name})
                for img in images
            ],
        }
        index = json.dumps(index_obj, indent=2).encode()
        return index, self.add_blob(index, OCI_INDEX)

    def tag(self, descriptor: dict, name: str) -> None:
        entry = dict(descriptor)
        entry["annotations"] = {REF_NAME: name}
        self.index_entries = [e for e in self.index_entries if e["annotations"][REF_NAME] != name]
        self.index_entries.append(entry)
        (self.root / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index_entries})
        )


def sample_layers(seed: str) -> list[dict[str, bytes]]:
    """Two layers with a few files; `seed` makes distinct images distinct; one file is
    incompressible so blob sizes are not trivially small."""
    rnd = hashlib.shake_256(seed.encode()).digest(96 * 1024)
    return [
        {
            "bin/hello": b"#!/bin/sh\necho hello from " + seed.encode() + b"\n",
            "etc/os-release": b"NAME=e2e\nID=e2e\n",
            "usr/share/data.bin": rnd,
        },
        {
            "app/config.yaml": f"name: {seed}\nreplicas: 3\n".encode(),
            "app/README": b"end-to-end test image\n" * 50,
        },
    ]


def read_blob(root: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    return (Path(root) / "blobs" / algo / hexd).read_bytes()


def blob_exists(root: Path, digest: str) -> bool:
    algo, hexd = digest.split(":", 1)
    return (Path(root) / "blobs" / algo / hexd).is_file()


def resolve(root: Path, tag: str) -> dict:
    """The descriptor that index.json of the layout at `root` gives for `tag`."""
    index = json.loads((Path(root) / "index.json").read_text())
    found = [m for m in index["manifests"] if (m.get("annotations") or {}).get(REF_NAME) == tag]
    assert len(found) == 1, f"tag {tag!r} in {root}/index.json: {index}"
    return found[0]


def blob_count(root: Path) -> int:
    return len(os.listdir(Path(root) / "blobs" / "sha256"))
