#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (unit, integration, crash tests) and
# the Python client tests against the real binary. Installs what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== formatting"
cargo fmt --all -- --check

echo "== Rust tests"
cargo test --locked --workspace --all-targets

echo "== embedded example"
cargo run --locked --quiet --example embedded

echo "== Python client tests"
venv=.venv
if [ ! -x "$venv/bin/pytest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
BUCKETDB_BIN="$PWD/target/debug/bucketdb" "$venv/bin/pytest" -q tests/python
