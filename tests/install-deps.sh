#!/usr/bin/env bash
# Installs what tests/e2e and tests/bench need on Debian bookworm (run as root): skopeo,
# umoci, podman, buildah and mmdebstrap (builds the Debian image the scan test scans) from apt, and a Python venv at tests/.venv pinned by tests/requirements.txt. Idempotent;
# a second run only checks and returns within a second or two.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${E2E_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages ---------------------------------------------------------
missing=()
for tool in skopeo umoci podman buildah mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]} with apt" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq skopeo umoci podman buildah mmdebstrap
fi

# --- Python venv -------------------------------------------------------------
# The stamp records which requirements and interpreter the venv was built from.
stamp="$venv/.requirements.sha256"
want="$( (sha256sum "$req" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import pytest, oras' >/dev/null 2>&1; then
    exit 0
fi

if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "install-deps: $python lacks venv/ensurepip; installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq python3-venv
fi

echo "install-deps: creating $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/python" -c 'import pytest, oras' >/dev/null
echo "$want" > "$stamp"
echo "install-deps: done ($("$venv/bin/python" -m pytest --version 2>&1), oras $("$venv/bin/python" -c 'import oras; print(oras.__version__)'))" >&2
