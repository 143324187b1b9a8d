#!/usr/bin/env bash
# Compat suite: drives a built ferrotrue binary with the official, unpatched
# clients (@supabase/auth-js for Node, supabase-auth for Python).
#
# usage: tests/compat/run.sh <path-to-ferrotrue-binary>
#
# Installs the clients (Python venv at target/compat-venv, npm ci in
# tests/compat/js), then starts, each on a free loopback port with a fresh data
# dir:
#   * the main server (MAILER_AUTOCONFIRM=true, WebAuthn factors for
#     http://localhost:3000)                              -> FERROTRUE_URL
#   * an SMTP sink (aiosmtpd, Maildir handler)             -> FERROTRUE_MAILDIR
#   * a second server for the email flows (autoconfirm off, real SMTP to the
#     sink, reauthentication required for password changes) -> FERROTRUE_EMAIL_URL
#   * an OpenID Connect provider (oauth2-mock-server, tests/compat/js/oidc-provider.mjs):
#     a generic issuer and a Keycloak-style realm   -> FERROTRUE_OIDC_ISSUER,
#                                                      FERROTRUE_KEYCLOAK_ISSUER
#   * a third server with both configured as OAuth providers (generic OIDC and
#     Keycloak), manual linking on                  -> FERROTRUE_OAUTH_URL
#   * a send-SMS hook receiver (tests/compat/sms_hook.py) checking the Standard
#     Webhooks signature and appending each payload as a JSON line to a file
#                                                   -> FERROTRUE_SMS_LOG
#   * a fourth server for the phone flows (SMS autoconfirm off, codes through
#     that hook, email autoconfirm on, MFA phone factors on) -> FERROTRUE_PHONE_URL
#   * a fifth server signing with an ES256 key from `ferrotrue keys generate`
#     (GOTRUE_JWT_KEYS), autoconfirm on              -> FERROTRUE_KEYS_URL
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
# Three more, distinct from those: the OAuth server and the two OpenID issuers.
read -r OAUTH_PORT OIDC_PORT KC_PORT < <("$PYTHON" -c '
import socket, sys
taken = {int(p) for p in sys.argv[1:]}
socks = []
while len(socks) < 3:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] in taken:
        s.close()
        continue
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
' "$PORT" "$EMAIL_PORT" "$SMTP_PORT")
if [[ -z "${KC_PORT:-}" ]]; then
  echo "compat: could not pick free ports for the OAuth servers" >&2
  exit 1
fi
# Two more, distinct from all of those: the phone-flow server and the send-SMS hook.
read -r PHONE_PORT HOOK_PORT < <("$PYTHON" -c '
import socket, sys
taken = {int(p) for p in sys.argv[1:]}
socks = []
while len(socks) < 2:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] in taken:
        s.close()
        continue
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
' "$PORT" "$EMAIL_PORT" "$SMTP_PORT" "$OAUTH_PORT" "$OIDC_PORT" "$KC_PORT")
if [[ -z "${HOOK_PORT:-}" ]]; then
  echo "compat: could not pick free ports for the phone flows" >&2
  exit 1
fi
# One more, distinct from all of those: the asymmetric-keys server.
read -r KEYS_PORT < <("$PYTHON" -c '
import socket, sys
taken = {int(p) for p in sys.argv[1:]}
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] not in taken:
        break
    s.close()
print(s.getsockname()[1])
s.close()
' "$PORT" "$EMAIL_PORT" "$SMTP_PORT" "$OAUTH_PORT" "$OIDC_PORT" "$KC_PORT" "$PHONE_PORT" "$HOOK_PORT")
if [[ -z "${KEYS_PORT:-}" ]]; then
  echo "compat: could not pick a free port for the asymmetric-keys server" >&2
  exit 1
fi
# Every request of the suites comes from 127.0.0.1, so the per-client rate limits (on by default
# in ferrotrue, keyed by the peer address) are raised, as GoTrue's own test setups raise theirs.
RAISED_LIMITS=(
  GOTRUE_RATE_LIMIT_OTP=100000
  GOTRUE_RATE_LIMIT_VERIFY=100000
  GOTRUE_RATE_LIMIT_TOKEN_REFRESH=100000
  GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=100000
  FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=100000
  FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=100000
  FERROTRUE_RATE_LIMIT_CODE_PER_TARGET=100000
  GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY=100000
)
# The send-SMS hook secret: 32 random bytes, as GOTRUE_HOOK_SEND_SMS_SECRETS wants it.
SMS_HOOK_SECRET="v1,whsec_$("$PYTHON" -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-compat.XXXXXX")"
DATA_DIR="$WORK_DIR/main"
EMAIL_DATA_DIR="$WORK_DIR/email"
MAIL_DIR="$WORK_DIR/maildir"
mkdir -p "$DATA_DIR" "$EMAIL_DATA_DIR" "$MAIL_DIR"/{tmp,new,cur}
OAUTH_DATA_DIR="$WORK_DIR/oauth"
mkdir -p "$OAUTH_DATA_DIR"
OAUTH_LOG="$WORK_DIR/server-oauth.log"
OIDC_LOG="$WORK_DIR/oidc-provider.log"
OAUTH_URL="http://127.0.0.1:$OAUTH_PORT"
OIDC_ISSUER="http://127.0.0.1:$OIDC_PORT"
KC_ISSUER="http://127.0.0.1:$KC_PORT/realms/ferrotrue"
OIDC_CLIENT_ID="ferrotrue-compat"
OAUTH_SERVER_PID=""
OIDC_PID=""
PHONE_DATA_DIR="$WORK_DIR/phone"
mkdir -p "$PHONE_DATA_DIR"
PHONE_LOG="$WORK_DIR/server-phone.log"
HOOK_LOG="$WORK_DIR/sms-hook.log"
SMS_LOG="$WORK_DIR/sms.jsonl"
: >"$SMS_LOG"
PHONE_URL="http://127.0.0.1:$PHONE_PORT"
HOOK_URL="http://127.0.0.1:$HOOK_PORT"
PHONE_SERVER_PID=""
HOOK_PID=""
KEYS_DATA_DIR="$WORK_DIR/keys"
mkdir -p "$KEYS_DATA_DIR"
KEYS_LOG="$WORK_DIR/server-keys.log"
KEYS_URL="http://127.0.0.1:$KEYS_PORT"
KEYS_SERVER_PID=""
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
  stop_pid "$OAUTH_SERVER_PID"
  stop_pid "$OIDC_PID"
  stop_pid "$PHONE_SERVER_PID"
  stop_pid "$HOOK_PID"
  stop_pid "$KEYS_SERVER_PID"
  if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
    show_log "ferrotrue server log" "$LOG"
    show_log "ferrotrue email-flow server log" "$EMAIL_LOG"
    show_log "aiosmtpd log" "$SMTP_LOG"
    show_log "ferrotrue OAuth server log" "$OAUTH_LOG"
    show_log "OpenID provider log" "$OIDC_LOG"
    show_log "ferrotrue phone-flow server log" "$PHONE_LOG"
    show_log "send-SMS hook log" "$HOOK_LOG"
    show_log "send-SMS hook payloads" "$SMS_LOG"
    show_log "ferrotrue asymmetric-keys server log" "$KEYS_LOG"
  fi
  rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_ready <pid> <name> <seconds> <probe...>: runs the probe every 0.1 s until it succeeds,
# failing early if the process exits and after <seconds> otherwise.
wait_ready() {
  local pid=$1 name=$2 seconds=$3 rc
  shift 3
  for _ in $(seq 1 $((seconds * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" || rc=$?
      echo "compat: $name exited before becoming ready (exit code $rc)" >&2
      return 1
    fi
    if "$@" >/dev/null 2>&1; then
      echo "==> compat: $name is ready"
      return 0
    fi
    sleep 0.1
  done
  echo "compat: $name was not ready within $seconds s" >&2
  return 1
}

# wait_healthy <pid> <url> <name>: GET /health answers within ~20 s.
wait_healthy() {
  wait_ready "$1" "$3" 20 curl -fsS -o /dev/null --max-time 1 "$2/health"
}

# ---- storage ----------------------------------------------------------------
# COMPAT_BACKEND=postgres: every server serves from its own fresh database on the cluster at
# FERROTRUE_TEST_DATABASE_URL (./test.sh starts one) instead of its data dir (an empty
# GOTRUE_DB_DATABASE_URL means sled).
MAIN_DB="" EMAIL_DB="" OAUTH_DB="" PHONE_DB="" KEYS_DB=""
if [[ "${COMPAT_BACKEND:-sled}" == postgres ]]; then
  : "${FERROTRUE_TEST_DATABASE_URL:?COMPAT_BACKEND=postgres needs FERROTRUE_TEST_DATABASE_URL}"
  fresh_db() { # <name>: creates a database, prints its URL
    local name="compat_${1}_$$_${RANDOM}"
    psql "$FERROTRUE_TEST_DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" >/dev/null
    "$PYTHON" -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
      "$FERROTRUE_TEST_DATABASE_URL" "$name"
  }
  MAIN_DB=$(fresh_db main) EMAIL_DB=$(fresh_db email) OAUTH_DB=$(fresh_db oauth)
  PHONE_DB=$(fresh_db phone) KEYS_DB=$(fresh_db keys)
  echo "==> compat: servers on Postgres (one database each on ${FERROTRUE_TEST_DATABASE_URL%%\?*})"
fi

echo "==> compat: starting $BIN on $URL (data dir $DATA_DIR)"
env "${RAISED_LIMITS[@]}" \
  PORT="$PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$DATA_DIR" \
  GOTRUE_DB_DATABASE_URL="$MAIN_DB" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_MAILER_AUTOCONFIRM=true \
  GOTRUE_EXTERNAL_PHONE_ENABLED=true \
  GOTRUE_SMS_AUTOCONFIRM=true \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_LOG_LEVEL=warn \
  GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL=0 \
  GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED=true \
  GOTRUE_MFA_WEB_AUTHN_VERIFY_ENABLED=true \
  GOTRUE_WEBAUTHN_RP_ID=localhost \
  GOTRUE_WEBAUTHN_RP_DISPLAY_NAME="ferrotrue compat" \
  GOTRUE_WEBAUTHN_RP_ORIGINS=http://localhost:3000 \
  "$BIN" >"$LOG" 2>&1 &
SERVER_PID=$!

echo "==> compat: starting aiosmtpd on 127.0.0.1:$SMTP_PORT (Maildir $MAIL_DIR)"
"$VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" \
  -c aiosmtpd.handlers.Mailbox "$MAIL_DIR" >"$SMTP_LOG" 2>&1 &
SMTP_PID=$!
wait_ready "$SMTP_PID" "aiosmtpd" 10 "$VENV/bin/python" -c \
  'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()' "$SMTP_PORT"

echo "==> compat: starting $BIN on $EMAIL_URL for the email flows (data dir $EMAIL_DATA_DIR)"
env "${RAISED_LIMITS[@]}" \
  PORT="$EMAIL_PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$EMAIL_DATA_DIR" \
  GOTRUE_DB_DATABASE_URL="$EMAIL_DB" \
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

echo "==> compat: starting the OpenID provider (oauth2-mock-server) on $OIDC_ISSUER and $KC_ISSUER"
(cd "$JS" && exec node oidc-provider.mjs "$OIDC_PORT" "$KC_PORT") >"$OIDC_LOG" 2>&1 &
OIDC_PID=$!

echo "==> compat: starting $BIN on $OAUTH_URL for the OAuth flows (data dir $OAUTH_DATA_DIR)"
env "${RAISED_LIMITS[@]}" \
  PORT="$OAUTH_PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$OAUTH_DATA_DIR" \
  GOTRUE_DB_DATABASE_URL="$OAUTH_DB" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_MAILER_AUTOCONFIRM=true \
  API_EXTERNAL_URL="$OAUTH_URL" \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_URI_ALLOW_LIST='http://localhost:3000/**' \
  GOTRUE_SECURITY_MANUAL_LINKING_ENABLED=true \
  GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED=true \
  GOTRUE_EXTERNAL_OIDC_ENABLED=true \
  GOTRUE_EXTERNAL_OIDC_CLIENT_ID="$OIDC_CLIENT_ID" \
  GOTRUE_EXTERNAL_OIDC_SECRET=compat-oidc-secret \
  GOTRUE_EXTERNAL_OIDC_URL="$OIDC_ISSUER" \
  GOTRUE_EXTERNAL_KEYCLOAK_ENABLED=true \
  GOTRUE_EXTERNAL_KEYCLOAK_CLIENT_ID="$OIDC_CLIENT_ID" \
  GOTRUE_EXTERNAL_KEYCLOAK_SECRET=compat-keycloak-secret \
  GOTRUE_EXTERNAL_KEYCLOAK_URL="$KC_ISSUER" \
  GOTRUE_LOG_LEVEL=warn \
  "$BIN" >"$OAUTH_LOG" 2>&1 &
OAUTH_SERVER_PID=$!

echo "==> compat: starting the send-SMS hook receiver on $HOOK_URL (payloads to $SMS_LOG)"
"$VENV/bin/python" "$HERE/sms_hook.py" "$HOOK_PORT" "$SMS_HOOK_SECRET" "$SMS_LOG" >"$HOOK_LOG" 2>&1 &
HOOK_PID=$!
wait_ready "$HOOK_PID" "the send-SMS hook receiver" 10 curl -fsS -o /dev/null --max-time 1 "$HOOK_URL/"

echo "==> compat: starting $BIN on $PHONE_URL for the phone flows (data dir $PHONE_DATA_DIR)"
env "${RAISED_LIMITS[@]}" \
  PORT="$PHONE_PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$PHONE_DATA_DIR" \
  GOTRUE_DB_DATABASE_URL="$PHONE_DB" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_MAILER_AUTOCONFIRM=true \
  GOTRUE_EXTERNAL_PHONE_ENABLED=true \
  GOTRUE_SMS_AUTOCONFIRM=false \
  GOTRUE_HOOK_SEND_SMS_ENABLED=true \
  GOTRUE_HOOK_SEND_SMS_URI="$HOOK_URL/sms" \
  GOTRUE_HOOK_SEND_SMS_SECRETS="$SMS_HOOK_SECRET" \
  GOTRUE_SMS_MAX_FREQUENCY=0s \
  GOTRUE_RATE_LIMIT_SMS_SENT=1000 \
  GOTRUE_SMS_OTP_EXP=300 \
  GOTRUE_MFA_PHONE_ENROLL_ENABLED=true \
  GOTRUE_MFA_PHONE_VERIFY_ENABLED=true \
  API_EXTERNAL_URL="$PHONE_URL" \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_LOG_LEVEL=warn \
  "$BIN" >"$PHONE_LOG" 2>&1 &
PHONE_SERVER_PID=$!

echo "==> compat: starting $BIN on $KEYS_URL with an ES256 GOTRUE_JWT_KEYS (data dir $KEYS_DATA_DIR)"
KEYS_JSON="$("$BIN" keys generate --alg ES256)"
env "${RAISED_LIMITS[@]}" \
  PORT="$KEYS_PORT" \
  GOTRUE_API_HOST=127.0.0.1 \
  FERROTRUE_DATA_DIR="$KEYS_DATA_DIR" \
  GOTRUE_DB_DATABASE_URL="$KEYS_DB" \
  GOTRUE_JWT_SECRET="$JWT_SECRET" \
  GOTRUE_JWT_KEYS="$KEYS_JSON" \
  GOTRUE_MAILER_AUTOCONFIRM=true \
  API_EXTERNAL_URL="$KEYS_URL" \
  GOTRUE_SITE_URL=http://localhost:3000 \
  GOTRUE_LOG_LEVEL=warn \
  "$BIN" >"$KEYS_LOG" 2>&1 &
KEYS_SERVER_PID=$!

wait_healthy "$SERVER_PID" "$URL" "server"
wait_healthy "$EMAIL_SERVER_PID" "$EMAIL_URL" "email-flow server"
wait_healthy "$OAUTH_SERVER_PID" "$OAUTH_URL" "OAuth server"
wait_healthy "$PHONE_SERVER_PID" "$PHONE_URL" "phone-flow server"
wait_healthy "$KEYS_SERVER_PID" "$KEYS_URL" "asymmetric-keys server"
oidc_ready() {
  curl -fsS -o /dev/null --max-time 1 "$OIDC_ISSUER/.well-known/openid-configuration" \
    && curl -fsS -o /dev/null --max-time 1 "$KC_ISSUER/.well-known/openid-configuration"
}
wait_ready "$OIDC_PID" "the OpenID provider" 20 oidc_ready

export FERROTRUE_URL="$URL"
export FERROTRUE_EMAIL_URL="$EMAIL_URL"
export FERROTRUE_MAILDIR="$MAIL_DIR"
export FERROTRUE_JWT_SECRET="$JWT_SECRET"
export FERROTRUE_OAUTH_URL="$OAUTH_URL"
export FERROTRUE_OIDC_ISSUER="$OIDC_ISSUER"
export FERROTRUE_KEYCLOAK_ISSUER="$KC_ISSUER"
export FERROTRUE_OIDC_CLIENT_ID="$OIDC_CLIENT_ID"
export FERROTRUE_PHONE_URL="$PHONE_URL"
export FERROTRUE_SMS_LOG="$SMS_LOG"
export FERROTRUE_KEYS_URL="$KEYS_URL"
export FERROTRUE_BIN="$BIN"

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
