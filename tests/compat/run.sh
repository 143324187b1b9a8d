#!/usr/bin/env bash
# Compat suite: drives a built ferrotrue binary with the official, unpatched
# clients (@supabase/auth-js for Node, supabase-auth for Python).
#
# usage: tests/compat/run.sh <path-to-ferrotrue-binary>
#
# Installs the clients (Python venv at target/compat-venv, npm ci in
# tests/compat/js), then starts, each on a free loopback port with a fresh data
# dir:
#   * the main server (MAILER_AUTOCONFIRM=true)           -> FERROTRUE_URL
#   * an SMTP sink (aiosmtpd, Maildir handler)             -> FERROTRUE_MAILDIR
#   * a second server for the email flows (autoconfirm off, real SMTP to the
#     sink, reauthentication required for password changes) -> FERROTRUE_EMAIL_URL
# runs both suites and stops everything. Exits non-zero if anything failed;
# prints the server and SMTP logs in that case.
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

# ---- processes --------------------------------------------------------------
# Three distinct free loopback ports (held open together so they differ).
read -r PORT EMAIL_PORT SMTP_PORT < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')
if [[ -z "${SMTP_PORT:-}" ]]; then
  echo "compat: could not pick free ports" >&2
  exit 1
fi
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-compat.XXXXXX")"
DATA_DIR="$WORK_DIR/main"
EMAIL_DATA_DIR="$WORK_DIR/email"
MAIL_DIR="$WORK_DIR/maildir"
mkdir -p "$DATA_DIR" "$EMAIL_DATA_DIR" "$MAIL_DIR"/{tmp,new,cur}
LOG="$WORK_DIR/server.log"
EMAIL_LOG="$WORK_DIR/server-email.log"
SMTP_LOG="$WORK_DIR/smtp.log"
URL="http://127.0.0.1:$PORT"
EMAIL_URL="http://127.0.0.1:$EMAIL_PORT"
SERVER_PID=""
EMAIL_SERVER_PID=""
SMTP_PID=""
FAILED=0

show_log() { # <title> <file>
  echo "---- $1 ($2) ----"
  if [[ -s "$2" ]]; then cat "$2"; else echo "(empty)"; fi
  echo "---- end of $1 ----"
}

stop_pid() { # <pid>
  local pid=$1
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  stop_pid "$EMAIL_SERVER_PID"
  stop_pid "$SMTP_PID"
  if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
    show_log "ferrotrue server log" "$LOG"
    show_log "ferrotrue email-flow server log" "$EMAIL_LOG"
    show_log "aiosmtpd log" "$SMTP_LOG"
  fi
  rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_healthy <pid> <url> <name>: polls GET /health for up to ~20 s.
wait_healthy() {
  local pid=$1 url=$2 name=$3 server_rc
  for _ in $(seq 1 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      server_rc=0
      wait "$pid" || server_rc=$?
      echo "compat: $name exited before becoming healthy (exit code $server_rc)" >&2
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "$url/health" 2>/dev/null; then
      echo "==> compat: $name is healthy"
      return 0
    fi
    sleep 0.1
  done
  echo "compat: $name did not answer GET $url/health within 20 s" >&2
  return 1
}

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

echo "==> compat: starting aiosmtpd on 127.0.0.1:$SMTP_PORT (Maildir $MAIL_DIR)"
"$VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
  -c aiosmtpd.handlers.Mailbox "$MAIL_DIR" >"$SMTP_LOG" 2>&1 &
SMTP_PID=$!
smtp_ready=0
for _ in $(seq 1 100); do # ~10 s
  if ! kill -0 "$SMTP_PID" 2>/dev/null; then
    echo "compat: aiosmtpd exited before accepting connections" >&2
    exit 1
  fi
  if "$VENV/bin/python" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()' \
    "$SMTP_PORT" 2>/dev/null; then
    smtp_ready=1
    break
  fi
  sleep 0.1
done
if [[ $smtp_ready -ne 1 ]]; then
  echo "compat: aiosmtpd did not accept connections within 10 s" >&2
  exit 1
fi

echo "==> compat: starting $BIN on $EMAIL_URL for the email flows (data dir $EMAIL_DATA_DIR)"
env \
  PORT="$EMAIL_PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$EMAIL_DATA_DIR" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_MAILER_AUTOCONFIRM=false \
  GOTRUE_SMTP_HOST=127.0.0.1 \
  GOTRUE_SMTP_PORT="$SMTP_PORT" \
  GOTRUE_SMTP_ADMIN_EMAIL=auth@example.com \
  GOTRUE_SMTP_MAX_FREQUENCY=0s \
  GOTRUE_RATE_LIMIT_EMAIL_SENT=1000 \
  API_EXTERNAL_URL="$EMAIL_URL" \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_URI_ALLOW_LIST='http://localhost:3000/**' \
  GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION=true \
  GOTRUE_LOG_LEVEL=warn \
  "$BIN" >"$EMAIL_LOG" 2>&1 &
EMAIL_SERVER_PID=$!

wait_healthy "$SERVER_PID" "$URL" "server"
wait_healthy "$EMAIL_SERVER_PID" "$EMAIL_URL" "email-flow server"

export FERROTRUE_URL="$URL"
export FERROTRUE_EMAIL_URL="$EMAIL_URL"
export FERROTRUE_MAILDIR="$MAIL_DIR"
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
