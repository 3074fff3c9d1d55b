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
# rclone and s3cmd (Debian packages) for the S3 client suite, openssl for its TLS cases;
# installed when missing and we can (root with apt-get, as in CI), else those tests skip.
if ! command -v rclone >/dev/null || ! command -v s3cmd >/dev/null || ! command -v openssl >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone s3cmd openssl >/dev/null
  else
    echo "rclone/s3cmd/openssl missing and apt-get unavailable (not root?): their tests will be skipped"
  fi
fi
# Debian's chromium for the web console's browser tests (Playwright drives it; no browser
# is downloaded). Installed when missing and we can; else those tests skip (fail in CI).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium missing and apt-get unavailable (not root?): the console's browser tests will be skipped"
  fi
fi
venv=.venv
requirements=tests/python/requirements.txt
marker="$venv/.requirements-installed"  # a copy of the requirements last installed
if [ ! -x "$venv/bin/pip" ]; then
  python3 -m venv "$venv"
fi
# (Re)install when the requirements are newer than, or differ from, what was installed,
# so an existing venv picks up new or changed packages.
if [ ! -f "$marker" ] || [ "$requirements" -nt "$marker" ] || ! cmp -s "$requirements" "$marker"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$marker"
fi
BUCKETDB_BIN="$PWD/target/debug/bucketdb" "$venv/bin/pytest" -q tests/python
