#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. formatting check,
#   2. every Rust target builds (benches included) and every unit + integration test passes
#      (the integration tests start real servers, a real SMTP sink, and kill -9 the real binary),
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

echo "==> cargo test (unit, integration, kill -9, supervision)"
cargo test --workspace --locked

echo "==> compat suite (official clients against target/debug/ferrotrue)"
tests/compat/run.sh target/debug/ferrotrue
