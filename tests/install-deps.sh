#!/usr/bin/env bash
# Installs what tests/e2e and tests/bench need on Debian bookworm (run as root): skopeo,
# umoci, podman, buildah, mmdebstrap (builds the Debian image the scan test scans),
# docker-registry and htpasswd (the proxy tests' upstream) from apt, a Python venv at tests/.venv pinned by tests/requirements.txt, and tests/.venv-infra (cfn-lint, checkov, boto3) pinned by tests/requirements-infra.txt. Idempotent;
# a second run only checks and returns within a second or two.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${E2E_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages ---------------------------------------------------------
# tool -> Debian package: docker-registry (the reference registry 2.8) is the proxy tests'
# upstream, htpasswd (apache2-utils) makes its bcrypt password file.
declare -A package_of=([skopeo]=skopeo [umoci]=umoci [podman]=podman [buildah]=buildah
    [mmdebstrap]=mmdebstrap [docker-registry]=docker-registry [htpasswd]=apache2-utils)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]} with apt" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq "${missing[@]}"
fi

# --- Python venvs -------------------------------------------------------------
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "install-deps: $python lacks venv/ensurepip; installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq python3-venv
fi

# install_venv DIR REQUIREMENTS MODULES...: (re)builds DIR from the pinned REQUIREMENTS unless
# its stamp says it already was (same requirements, same interpreter) and MODULES import.
install_venv() {
    local dir="$1" requirements="$2"; shift 2
    local imports; imports="import $(IFS=,; echo "$*")"
    local stamp="$dir/.requirements.sha256" want
    want="$( (sha256sum "$requirements" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$dir/bin/python" -c "$imports" >/dev/null 2>&1; then
        return 0
    fi
    echo "install-deps: creating $dir" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    "$dir/bin/python" -c "$imports" >/dev/null
    echo "$want" > "$stamp"
    echo "install-deps: $dir ready" >&2
}

# The e2e suite: pytest and the oras SDK.
install_venv "$venv" "$req" pytest oras
# The infrastructure tests' tools (cfn-lint, checkov, boto3), apart: checkov pins its own
# versions of packages the e2e venv also has.
install_venv "${INFRA_VENV:-$here/.venv-infra}" "$here/requirements-infra.txt" cfnlint checkov boto3
