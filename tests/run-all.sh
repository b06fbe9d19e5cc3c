#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs fmt, clippy, every Rust
# test (unit, contract suites, HTTP tests) and the end-to-end tests with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash tests/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "Rust tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

step "end-to-end tests with real clients"
cargo build -p registry-local
REGISTRY_BIN="$PWD/target/debug/registry" tests/.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
