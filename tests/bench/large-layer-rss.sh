#!/usr/bin/env bash
# Memory benchmark: pushes ONE large incompressible layer (LAYER_MB MiB, default 1024) with skopeo
# into the release `registry` binary and reports the registry's peak RSS (VmHWM), push time and
# throughput. Exits non-zero if the build, the push or the check of what was stored fails.
#
# Env: LAYER_MB (default 1024), REGISTRY_BIN (skip the build and use this binary),
#      BENCH_TMPDIR (where the layout and data dir go; default $TMPDIR or /tmp; needs ~2x LAYER_MB
#      free), BUILD_RETRIES (default 5: others may be mid-edit), KEEP_TMP=1 (keep the files).
set -euo pipefail

LAYER_MB="${LAYER_MB:-1024}"
BUILD_RETRIES="${BUILD_RETRIES:-5}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

command -v skopeo >/dev/null || die "skopeo missing: run tests/install-deps.sh"
command -v curl >/dev/null || die "curl missing"
[[ "$LAYER_MB" =~ ^[0-9]+$ ]] && [ "$LAYER_MB" -gt 0 ] || die "LAYER_MB must be a positive integer"

# ---- binary -------------------------------------------------------------------------
if [ -n "${REGISTRY_BIN:-}" ]; then
    bin="$REGISTRY_BIN"
else
    bin="$repo_root/target/release/registry"
    for attempt in $(seq 1 "$BUILD_RETRIES"); do
        log "cargo build --release -p registry-local (attempt $attempt)"
        if (cd "$repo_root" && cargo build --release -p registry-local >&2); then
            break
        fi
        [ "$attempt" -lt "$BUILD_RETRIES" ] || die "release build failed $BUILD_RETRIES times"
        sleep 20
    done
fi
[ -x "$bin" ] || die "no binary at $bin"

# ---- scratch space ------------------------------------------------------------------
base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
need_kb=$(( LAYER_MB * 1024 * 2 + 512 * 1024 ))  # the layout + the registry's copy + slack
free_kb=$(df -Pk "$base" | awk 'NR==2 {print $4}')
[ "$free_kb" -ge "$need_kb" ] || die "need $((need_kb / 1024)) MiB free in $base, have $((free_kb / 1024)) MiB"
work="$(mktemp -d "$base/large-layer-rss.XXXXXX")"
reg_pid=""
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$reg_pid" ] && kill -0 "$reg_pid" 2>/dev/null; then
        kill -TERM "$reg_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$reg_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$reg_pid" 2>/dev/null || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the layout: one layer holding one file of random bytes -----------------------------
# The layer is a gzip stream of "stored" (level 0) deflate blocks: skopeo would gzip an
# uncompressed tar layer itself on the way to a registry (slow, and a different digest), but
# passes a gzip layer through untouched, so the registry receives exactly these bytes.
log "writing a ${LAYER_MB} MiB layer to $work/layout"
python3 - "$work/layout" "$LAYER_MB" <<'PY'
import hashlib, io, json, os, sys, tarfile, zlib
root, mb = sys.argv[1], int(sys.argv[2])
size = mb * 1024 * 1024
blobs = os.path.join(root, "blobs", "sha256")
os.makedirs(blobs)

def put(data: bytes, media_type: str) -> dict:
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + d, "size": len(data)}

# Stream tar header + /dev/urandom + padding + end blocks through gzip straight into the blob
# file, hashing both forms as we go, so the layer exists on disk exactly once.
info = tarfile.TarInfo("payload.bin")
info.size, info.mode, info.mtime = size, 0o644, 0
tar_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
gz = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip framing
tmp = os.path.join(root, "layer.tmp")
written = 0
with open(tmp, "wb") as out, open("/dev/urandom", "rb") as rnd:
    def out_write(b):
        global written
        gz_hash.update(b); out.write(b); written += len(b)
    def emit(b):
        tar_hash.update(b); out_write(gz.compress(b))
    emit(info.tobuf(format=tarfile.GNU_FORMAT))
    left = size
    while left:
        b = rnd.read(min(left, 8 << 20))
        emit(b); left -= len(b)
    emit(b"\0" * ((512 - size % 512) % 512))
    emit(b"\0" * 1024)
    out_write(gz.flush())
digest, diff_id = gz_hash.hexdigest(), tar_hash.hexdigest()
os.rename(tmp, os.path.join(blobs, digest))
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + digest, "size": written}
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "config": {}, "history": [{"created_by": "large-layer-rss.sh"}],
}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": put(config, "application/vnd.oci.image.config.v1+json"), "layers": [layer],
}).encode()
mdesc = put(manifest, "application/vnd.oci.image.manifest.v1+json")
mdesc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
with open(os.path.join(root, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
with open(os.path.join(root, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
with open(os.path.join(root, "layer.txt"), "w") as f:
    f.write(f"sha256:{digest} {written}\n")
PY
read -r layer_digest layer_size < "$work/layout/layer.txt"
log "layer $layer_digest ($layer_size bytes)"

# ---- the registry -------------------------------------------------------------------
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$work/data"
"$bin" --addr "127.0.0.1:$port" --data-dir "$work/data" --log "${REGISTRY_LOG:-info}" \
    >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
    kill -0 "$reg_pid" 2>/dev/null || { cat "$work/registry.log" >&2; die "registry exited at start"; }
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || die "registry did not answer GET /v2/"
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$reg_pid/status"; }
idle_kb="$(status_kb VmRSS)"
log "registry pid $reg_pid on 127.0.0.1:$port, idle RSS $((idle_kb / 1024)) MiB"

# Sample VmRSS every 100 ms as a cross-check of the kernel's high-water mark.
(
    max=0
    while kill -0 "$reg_pid" 2>/dev/null; do
        v=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$reg_pid/status" 2>/dev/null || echo 0)
        [ "${v:-0}" -gt "$max" ] && { max=$v; echo "$max" > "$work/rss-max"; }
        sleep 0.1
    done
) &
sampler_pid=$!

# ---- the push -----------------------------------------------------------------------
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > "$work/policy.json"
mkdir -p "$work/skopeo-tmp"
start=$(date +%s.%N)
if ! skopeo --policy "$work/policy.json" --tmpdir "$work/skopeo-tmp" copy --dest-tls-verify=false \
        "oci:$work/layout:bench" "docker://127.0.0.1:$port/bench/large:v1" >"$work/skopeo.log" 2>&1; then
    tail -n 30 "$work/skopeo.log" >&2
    log "registry log:"; tail -n 30 "$work/registry.log" >&2
    die "skopeo push failed"
fi
end=$(date +%s.%N)
kill -0 "$reg_pid" 2>/dev/null || die "registry died during the push"
hwm_kb="$(status_kb VmHWM)"
rss_after_kb="$(status_kb VmRSS)"
kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""
sampled_kb="$(cat "$work/rss-max" 2>/dev/null || echo 0)"

# ---- check what was stored ----------------------------------------------------------
manifest="$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$port/v2/bench/large/manifests/v1")" || die "manifest not pullable after push"
pushed_digest="$(printf '%s' "$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')"
[ "$pushed_digest" = "$layer_digest" ] || die "registry holds layer $pushed_digest, want $layer_digest (did skopeo recompress?)"
stored_len="$(curl -fsSI "http://127.0.0.1:$port/v2/bench/large/blobs/$layer_digest" \
    | tr -d '\r' | awk 'tolower($1) == "content-length:" {print $2}' || true)"
[ "$stored_len" = "$layer_size" ] || die "HEAD blob: content-length '$stored_len', want $layer_size"

secs="$(python3 -c "print($end - $start)")"
python3 - "$layer_size" "$secs" "$idle_kb" "$hwm_kb" "$sampled_kb" "$rss_after_kb" <<'PY'
import sys
size, secs, idle, hwm, sampled, after = int(sys.argv[1]), float(sys.argv[2]), *map(int, sys.argv[3:])
mib = size / 2**20
print(f"layer: {mib:.0f} MiB (random data, gzip level 0)")
print(f"push time: {secs:.2f} s")
print(f"throughput: {mib / secs:.1f} MiB/s")
print(f"idle RSS: {idle // 1024} MiB; RSS after push: {after // 1024} MiB; max sampled RSS: {sampled // 1024} MiB")
# VmHWM is the kernel's high-water mark, but it is only refreshed on unmaps, so a peak that the
# allocator gave back with madvise can escape it; the 100 ms samples cover that case.
print(f"VmHWM: {hwm // 1024} MiB")
print(f"peak RSS: {max(hwm, sampled) // 1024} MiB")
PY
