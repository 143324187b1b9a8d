#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. formatting check,
#   2. every Rust target builds (benches included) and every unit + integration test passes
#      (the integration tests start real servers, a real SMTP sink, and kill -9 the real binary),
#      (the Postgres tests run against a throw-away PostgreSQL cluster, tests/pg/cluster.sh,
#      installed from Debian's packages when missing; set FERROTRUE_TEST_DATABASE_URL to use
#      another server instead),
#   3. the compat suite drives the built binary with the official clients
#      (@supabase/auth-js from npm, supabase-auth from PyPI), installing them on first run.
set -euo pipefail
cd "$(dirname "$0")"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need node || ! need npm; then
  echo "==> installing Node.js and npm (Debian packages)"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if ! need python3; then
  echo "==> installing Python 3 (Debian packages)"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo build (all targets, benches included)"
cargo build --workspace --all-targets --locked

if [ -z "${FERROTRUE_TEST_DATABASE_URL:-}" ]; then
  echo "==> PostgreSQL for the tests (a throw-away cluster: tests/pg/cluster.sh)"
  PG_DIR=$(tests/pg/cluster.sh start)
  trap 'tests/pg/cluster.sh stop "$PG_DIR"' EXIT
  FERROTRUE_TEST_DATABASE_URL=$(tests/pg/cluster.sh url "$PG_DIR")
  export FERROTRUE_TEST_DATABASE_URL
fi

echo "==> cargo test (unit, integration, kill -9, supervision, Postgres; integration suite on sled)"
cargo test --workspace --locked

# The integration suite again, every TestServer on a fresh Postgres database. Skipped here, with
# the reason: modules about sled itself or about the binary's process (they spawn their own
# servers with their own settings, and ran above): backup (sled snapshots), upgrade (sled data
# directories of earlier releases), import (offline into a sled directory), crash (kill -9 of a
# sled node; pg_nodes has the Postgres one), security_storage (sled files on disk), cli,
# packaging, security_process, migrate (spawn the binary), pg and pg_nodes (Postgres already).
echo "==> cargo test --test api on Postgres (FERROTRUE_TEST_BACKEND=postgres)"
FERROTRUE_TEST_BACKEND=postgres cargo test --locked --test api -- \
  --skip backup:: --skip upgrade:: --skip import:: --skip crash:: --skip security_storage:: \
  --skip cli:: --skip packaging:: --skip security_process:: --skip migrate:: --skip pg:: --skip pg_nodes::

echo "==> compat suite (official clients against target/debug/ferrotrue)"
tests/compat/run.sh target/debug/ferrotrue

echo "==> compat suite on Postgres (every server on its own fresh database)"
COMPAT_BACKEND=postgres tests/compat/run.sh target/debug/ferrotrue
