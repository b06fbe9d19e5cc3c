#!/usr/bin/env bash
# Builds the Lambda functions for infra/template.yaml with cargo-lambda: target/lambda/<function>/bootstrap.
#
# usage: infra/build.sh [arm64|x86_64]      (default arm64, as the template's Architecture parameter)
# cargo-lambda comes from PyPI into target/cargo-lambda-venv (about 15 s the first time); it
# cross-compiles with Zig, so no cross toolchain is needed, only the Rust target, which is
# added with rustup when missing. Prints each function's binary and zipped size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

arch=${1:-arm64}
case "$arch" in
  arm64) flag=--arm64 target=aarch64-unknown-linux-gnu ;;
  x86_64) flag=--x86-64 target=x86_64-unknown-linux-gnu ;;
  *) echo "build.sh: architecture must be arm64 or x86_64, not $arch" >&2; exit 2 ;;
esac
# The functions the template deploys (its CodeUri directories): keep in step with infra/registry-resources.json.
functions=(registry-api registry-scan registry-webhook registry-proxy-fill)

venv=target/cargo-lambda-venv
if ! "$venv/bin/cargo-lambda" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check cargo-lambda==1.9.2
fi
export PATH="$PWD/$venv/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"

bins=()
for f in "${functions[@]}"; do bins+=(--bin "$f"); done
cargo lambda build --release "$flag" -p registry-api -p registry-scan-function -p registry-webhook -p registry-proxy-fill "${bins[@]}"

for f in "${functions[@]}"; do
  boot=target/lambda/$f/bootstrap
  zipped=$(python3 - "$boot" <<'PY'
import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))
PY
)
  printf '%-18s %s  binary %5.1f MiB  zipped %5.1f MiB\n' "$f" "$arch" \
    "$(echo "$(stat -c %s "$boot") / 1048576" | bc -l)" "$(echo "$zipped / 1048576" | bc -l)"
done
