#!/usr/bin/env bash
# The one test command: installs what the tests need (skopeo, umoci, oras, LocalStack),
# starts LocalStack, then runs fmt, clippy, every Rust test (unit, contract suites on
# both backends, HTTP and Lambda-harness tests) and the end-to-end tests with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

# No incremental caches (~3.5 GB on a full run): this command builds each crate once.
# Set CARGO_INCREMENTAL=1 to keep them for repeated local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# Free disk, so that a run that fails for space says so at the top (a clean build's
# target/ peaks near 4 GB).
df -h . | sed 's/^/disk: /'

step "installing test dependencies"
bash tests/install-deps.sh

step "starting LocalStack (no Docker needed)"
localstack/start
# shellcheck source=/dev/null
source localstack/env
trap 'localstack/stop >/dev/null 2>&1 || true' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "Rust tests (embedded and AWS adapters)"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

step "end-to-end tests with real clients"
cargo build -p registry-local -p registry-api
export REGISTRY_BIN="$PWD/target/debug/registry" HARNESS_BIN="$PWD/target/debug/lambda-harness"
tests/.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider -m "not faults"

step "fault injection (stops and restarts LocalStack)"
tests/.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider -m faults

du -sh target | sed 's/^/target size: /'
