#!/usr/bin/env bash
# HTTP load benchmark of the release binary with wrk, on 127.0.0.1 only.
#
#   bench/load.sh                      # build, then run every endpoint against sync and relaxed
#   DURATION=30s CONNS=32 bench/load.sh
#
# Environment (defaults in brackets):
#   DURATION [10s]  wrk -d per run          THREADS [2]  wrk -t        CONNS [16]  wrk -c
#   WRK_TIMEOUT [10s] wrk --timeout         POOL [2*CONNS] refresh chains created up front
#   MODES ["sync relaxed"]                  FERROTRUE_DURABILITY values, one fresh server each
#   ENDPOINTS ["health signup password user refresh"]
#   SKIP_BUILD [0]  1 = use the existing target/release/ferrotrue
#   KEEP_LOGS [0]   1 = keep the temp directory (server logs, wrk output)
#
# Each mode starts its own server with a fresh FERROTRUE_DATA_DIR (under TMPDIR, so on the
# disk TMPDIR is on — keep it off tmpfs or "sync" measures nothing), waits for /health, runs
# the endpoints for DURATION each, stops the server, and a summary table is printed at the end.
# Requires: cargo, wrk (apt-get install -y wrk), curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
POOL=${POOL:-$((CONNS * 2))}
MODES=${MODES:-"sync relaxed"}
ENDPOINTS=${ENDPOINTS:-"health signup password user refresh"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_LOGS=${KEEP_LOGS:-0}
JWT_SECRET="load-bench-secret-that-is-long-enough-for-hs256"
PASSWORD="bench-password-1234"

for tool in wrk curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "load.sh: '$tool' is required but not installed." >&2
        [ "$tool" = wrk ] && echo "  install it with: apt-get install -y wrk" >&2
        exit 1
    fi
done
if [ "$CONNS" -lt "$THREADS" ]; then
    echo "load.sh: CONNS ($CONNS) must be >= THREADS ($THREADS)" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-load.XXXXXX")
RESULTS="$WORK/results"
: >"$RESULTS"
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    local rc=$?
    stop_server
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" != 0 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$SKIP_BUILD" != 1 ]; then
    echo "== cargo build --release"
    (cd "$ROOT" && cargo build --release --bin ferrotrue)
fi
BIN="$ROOT/target/release/ferrotrue"
[ -x "$BIN" ] || { echo "load.sh: $BIN not found (build failed or SKIP_BUILD=1 without a build)" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

json_field() { # json_field <field>  (reads JSON on stdin)
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

start_server() { # start_server <durability>
    local mode=$1
    PORT=$(free_port)
    BASE="http://127.0.0.1:$PORT"
    local data="$WORK/data-$mode"
    mkdir -p "$data"
    env PORT="$PORT" GOTRUE_API_HOST=127.0.0.1 \
        FERROTRUE_DATA_DIR="$data" FERROTRUE_DURABILITY="$mode" \
        GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true \
        "$BIN" >"$WORK/server-$mode.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fs "$BASE/health" >/dev/null 2>&1; then
            echo "== server up on $BASE (FERROTRUE_DURABILITY=$mode, pid $SERVER_PID, data $data)"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "load.sh: server exited during start-up:" >&2
            cat "$WORK/server-$mode.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "load.sh: server did not answer /health within 30 s" >&2
    exit 1
}

# Fails loudly if the server is gone: its exit status and the end of its log.
check_server() { # check_server <mode>
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local rc=0
        wait "$SERVER_PID" || rc=$?
        SERVER_PID=""
        echo "load.sh: the server ($1) is gone, exit status $rc; end of its log:" >&2
        tail -n 20 "$WORK/server-$1.log" >&2
        exit 1
    fi
}

server_rss_mb() {
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?"
}

run_wrk() { # run_wrk <mode> <endpoint> <script> <path> [-- script args...]
    local mode=$1 name=$2 script=$3 path=$4
    shift 4
    echo "-- $name ($mode): wrk -t$THREADS -c$CONNS -d$DURATION --timeout $WRK_TIMEOUT -s bench/$script $BASE$path $*"
    local out="$WORK/wrk-$mode-$name.txt"
    check_server "$mode"
    BENCH_NAME="$mode/$name" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout "$WRK_TIMEOUT" --latency \
        -s "$BENCH_DIR/$script" "$BASE$path" "$@" >"$out" 2>&1 || {
        echo "load.sh: wrk failed for $name:" >&2
        cat "$out" >&2
        return 1
    }
    local line
    line=$(grep '^RESULT ' "$out" || true)
    if [ -z "$line" ]; then
        echo "load.sh: no result from wrk for $name:" >&2
        cat "$out" >&2
        return 1
    fi
    check_server "$mode"
    echo "$line $(server_rss_mb)" | tee -a "$RESULTS"
}

# A confirmed user for the password grant and GET /user (autoconfirm: signup returns a session).
create_login_user() {
    EMAIL="login-$1@example.com"
    local body
    body=$(curl -fsS -X POST "$BASE/signup" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}")
    ACCESS_TOKEN=$(printf '%s' "$body" | json_field access_token)
}

# POOL independent sessions (one password grant each) for the refresh chains.
create_refresh_pool() {
    local file=$1
    : >"$file"
    for _ in $(seq 1 "$POOL"); do
        curl -fsS -X POST "$BASE/token?grant_type=password" -H 'Content-Type: application/json' \
            -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field refresh_token >>"$file"
    done
}

for mode in $MODES; do
    start_server "$mode"
    create_login_user "$mode"
    for endpoint in $ENDPOINTS; do
        case $endpoint in
        health) run_wrk "$mode" health health.lua /health ;;
        signup) RUN_ID="$mode$$" PASSWORD="$PASSWORD" run_wrk "$mode" signup signup.lua / ;;
        password) EMAIL="$EMAIL" PASSWORD="$PASSWORD" run_wrk "$mode" password password.lua / ;;
        user) ACCESS_TOKEN="$ACCESS_TOKEN" run_wrk "$mode" user user.lua / ;;
        refresh)
            check_server "$mode"
            create_refresh_pool "$WORK/tokens-$mode.txt"
            run_wrk "$mode" refresh refresh.lua / -- "$WORK/tokens-$mode.txt" "$THREADS"
            ;;
        *) echo "load.sh: unknown endpoint '$endpoint'" >&2; exit 1 ;;
        esac
    done
    stop_server
done

echo
echo "== summary: wrk -t$THREADS -c$CONNS -d$DURATION (closed loop, load generator on the same host)"
python3 - "$RESULTS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("RESULT ")]
hdr = ("durability", "endpoint", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx", "sock err", "RSS MB", "note")
table = []
by = {}
for r in rows:
    _, name, rps, p50, p99, n, st, se, note, rss = r
    mode, ep = name.split("/", 1)
    by[(mode, ep)] = float(rps)
    table.append((mode, ep, rps, p50, p99, n, st, se, rss, note))
w = [max(len(str(x[i])) for x in table + [hdr]) for i in range(len(hdr))]
fmt = lambda x: "| " + " | ".join(str(v).ljust(w[i]) if i < 2 or i == 9 else str(v).rjust(w[i]) for i, v in enumerate(x)) + " |"
print(fmt(hdr))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for t in table:
    print(fmt(t))
eps = sorted({ep for _, ep in by}, key=lambda e: [t[1] for t in table].index(e))
if any(m == "sync" for m, _ in by) and any(m == "relaxed" for m, _ in by):
    print()
    for ep in eps:
        if ("sync", ep) in by and ("relaxed", ep) in by and by[("relaxed", ep)] > 0:
            print(f"{ep}: sync/relaxed throughput = {by[('sync', ep)] / by[('relaxed', ep)]:.2f}")
PY
