#!/usr/bin/env bash
# Compat suite: drives a built ferrotrue binary with the official, unpatched
# clients (@supabase/auth-js for Node, supabase-auth for Python).
#
# usage: tests/compat/run.sh <path-to-ferrotrue-binary>
#
# Installs the clients (Python venv at target/compat-venv, npm ci in
# tests/compat/js), starts the server on a free loopback port with a fresh
# data dir, runs both suites, stops the server. Exits non-zero if anything
# failed; prints the server log in that case.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 <path-to-ferrotrue-binary>" >&2
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ ! -f "$1" || ! -x "$1" ]]; then
  echo "compat: $1 is not an executable file" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/target/compat-venv"
JWT_SECRET="compat-suite-secret-at-least-32-chars-long"

# ---- installs ---------------------------------------------------------------
echo "==> compat: python venv at ${VENV#"$ROOT"/}"
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$ROOT/target"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/py/requirements.txt"

JS="$HERE/js"
if [[ ! -d "$JS/node_modules" || "$JS/package-lock.json" -nt "$JS/node_modules" ]]; then
  echo "==> compat: npm ci (tests/compat/js)"
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$JS/node_modules"
fi

# ---- server -----------------------------------------------------------------
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-compat.XXXXXX")"
LOG="$DATA_DIR/server.log"
URL="http://127.0.0.1:$PORT"
SERVER_PID=""
FAILED=0

show_log() {
  echo "---- ferrotrue server log ($LOG) ----"
  if [[ -s "$LOG" ]]; then cat "$LOG"; else echo "(empty)"; fi
  echo "---- end of server log ----"
}

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
    show_log
  fi
  rm -rf "$DATA_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> compat: starting $BIN on $URL (data dir $DATA_DIR)"
env \
  PORT="$PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$DATA_DIR" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_MAILER_AUTOCONFIRM=true \
  GOTRUE_EXTERNAL_PHONE_ENABLED=true \
  GOTRUE_SMS_AUTOCONFIRM=true \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_LOG_LEVEL=warn \
  GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL=0 \
  "$BIN" >"$LOG" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 200); do # ~20 s
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_rc=0
    wait "$SERVER_PID" || server_rc=$?
    SERVER_PID=""
    echo "compat: server exited before becoming healthy (exit code $server_rc)" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "$URL/health" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  echo "compat: server did not answer GET /health within 20 s" >&2
  exit 1
fi
echo "==> compat: server is healthy"

export FERROTRUE_URL="$URL"
export FERROTRUE_JWT_SECRET="$JWT_SECRET"

# ---- suites -----------------------------------------------------------------
echo
echo "==> compat: auth-js suite (@supabase/auth-js, node --test)"
if (cd "$JS" && node --test --test-timeout=30000); then
  JS_RESULT=passed
else
  JS_RESULT=FAILED
  FAILED=1
fi

echo
echo "==> compat: python suite (supabase-auth, pytest)"
if (cd "$HERE/py" && "$VENV/bin/python" -m pytest -q); then
  PY_RESULT=passed
else
  PY_RESULT=FAILED
  FAILED=1
fi

echo
echo "==> compat: auth-js suite $JS_RESULT, python suite $PY_RESULT"
exit "$FAILED"
