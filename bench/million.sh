#!/usr/bin/env bash
# Issue 13, "a million users": the same measurements on a data directory of SMALL users and one
# of LARGE users, loaded with `ferrotrue import` from bench/gen_users.py files.
#
#   bench/million.sh                       # 1k vs 1M (builds the release binary first)
#   LARGE=100000 DURATION=5s bench/million.sh
#
# For each size: generate (cached in CACHE_DIR), import (wall and CPU time), start the server
# (process start -> first GET /health 200), idle RSS 2 s later, then wrk runs of GET /user,
# the refresh grant and the password grant (an argon2 user) with req/s, p50/p99 and server CPU
# time per request (/proc/<pid>/stat utime+stime before/after, divided by requests; robust to a
# busy machine), and RSS after the runs. The last table gives LARGE/SMALL ratios.
#
# Environment (defaults in brackets):
#   SMALL [1000]  LARGE [1000000]  DURATION [10s]  THREADS [2]  CONNS [16]
#   LOGIN_CONNS [8] connections of the password-grant run (argon2-bound)
#   CACHE_DIR [/tmp/ferrotrue-million]  generated files and data directories, kept between runs
#   SKIP_BUILD [0]  1 = use the existing target/release/ferrotrue
#   DURABILITY [sync]
# Requires: cargo, wrk, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
SMALL=${SMALL:-1000}
LARGE=${LARGE:-1000000}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-16}
LOGIN_CONNS=${LOGIN_CONNS:-8}
CACHE_DIR=${CACHE_DIR:-/tmp/ferrotrue-million}
SKIP_BUILD=${SKIP_BUILD:-0}
DURABILITY=${DURABILITY:-sync}
PASSWORD="bench-password-1234" # what gen_users.py's shared hashes are of
JWT_SECRET="load-bench-secret-that-is-long-enough-for-hs256"
RAISED_LIMITS=(
    GOTRUE_RATE_LIMIT_OTP=1000000000 GOTRUE_RATE_LIMIT_VERIFY=1000000000
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH=1000000000 GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=1000000000
    FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=1000000000 FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=1000000000
)
# user0 has the argon2 hash (gen_users.py gives bcrypt to every 10th user, starting at user9).
LOGIN_EMAIL="user0@example.com"

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "million.sh: '$tool' is required" >&2; exit 1; }
done
if [ "$SKIP_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release --bin ferrotrue)
fi
BIN="$ROOT/target/release/ferrotrue"
mkdir -p "$CACHE_DIR"
RESULTS="$CACHE_DIR/results.txt"
: >"$RESULTS"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; true; }
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
TICK=$(getconf CLK_TCK)

run_wrk() { # run_wrk <size> <name> <conns> <script> [-- args]
    local size=$1 name=$2 conns=$3 script=$4
    shift 4
    local before after out line n
    before=$(cpu_ticks "$PID")
    out=$(BENCH_NAME="$size/$name" wrk -t"$THREADS" -c"$conns" -d"$DURATION" --timeout 10s \
        -s "$BENCH_DIR/$script" "$BASE" "$@")
    after=$(cpu_ticks "$PID")
    line=$(printf '%s\n' "$out" | grep '^RESULT ')
    n=$(echo "$line" | awk '{ print $6 }')
    # RESULT name req/s p50 p99 n non2xx sockerr note  +  cpu_us_per_req rss
    echo "$line $(python3 -c "print(f'{($after - $before) * 1e6 / $TICK / max($n, 1):.1f}')") $(rss_mb "$PID")" \
        | tee -a "$RESULTS"
}

for size in $SMALL $LARGE; do
    file="$CACHE_DIR/users-$size.jsonl"
    data="$CACHE_DIR/data-$size"
    if [ ! -s "$file" ]; then
        echo "== generating $size users into $file"
        python3 "$BENCH_DIR/gen_users.py" "$size" --out "$file"
    fi
    if [ ! -d "$data/db" ]; then
        echo "== ferrotrue import $file (--data-dir $data)"
        /usr/bin/time -f "IMPORT $size wall=%e s user=%U s sys=%S s maxrss=%M KB" \
            "$BIN" import "$file" --data-dir "$data" 2>&1 | grep -v '^import: ' | tee -a "$RESULTS"
    fi
    du -sh "$data/db" | sed "s/^/DISK $size /" | tee -a "$RESULTS"
    port=$(free_port)
    BASE="http://127.0.0.1:$port"
    t0=$(date +%s.%N)
    env PORT="$port" GOTRUE_API_HOST=127.0.0.1 FERROTRUE_DATA_DIR="$data" FERROTRUE_DURABILITY="$DURABILITY" \
        GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_LOG_LEVEL=warn "${RAISED_LIMITS[@]}" \
        "$BIN" >"$CACHE_DIR/server-$size.log" 2>&1 &
    PID=$!
    until curl -fs "$BASE/health" >/dev/null 2>&1; do
        kill -0 "$PID" 2>/dev/null || { echo "server died:" >&2; tail "$CACHE_DIR/server-$size.log" >&2; exit 1; }
        sleep 0.02
    done
    t1=$(date +%s.%N)
    start_cpu=$(python3 -c "print(f'{$(cpu_ticks "$PID") / $TICK:.2f}')")
    sleep 2
    echo "START $size $(python3 -c "print(f'{$t1 - $t0:.2f}')") s (cpu $start_cpu s) rss_idle=$(rss_mb "$PID") MB hwm=$(hwm_mb "$PID") MB" \
        | tee -a "$RESULTS"

    body=$(curl -fsS -X POST "$BASE/token?grant_type=password" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$LOGIN_EMAIL\",\"password\":\"$PASSWORD\"}")
    ACCESS_TOKEN=$(printf '%s' "$body" | json_field access_token) run_wrk "$size" user "$CONNS" user.lua
    tokens="$CACHE_DIR/tokens-$size.txt"
    : >"$tokens"
    for _ in $(seq 1 $((CONNS * 2))); do
        curl -fsS -X POST "$BASE/token?grant_type=password" -H 'Content-Type: application/json' \
            -d "{\"email\":\"$LOGIN_EMAIL\",\"password\":\"$PASSWORD\"}" | json_field refresh_token >>"$tokens"
    done
    run_wrk "$size" refresh "$CONNS" refresh.lua -- "$tokens" "$THREADS"
    EMAIL="$LOGIN_EMAIL" PASSWORD="$PASSWORD" run_wrk "$size" login "$LOGIN_CONNS" password.lua
    echo "END $size rss=$(rss_mb "$PID") MB hwm=$(hwm_mb "$PID") MB" | tee -a "$RESULTS"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
done

echo
echo "== $SMALL vs $LARGE users (wrk -t$THREADS, $DURATION; CPU = server CPU time per request)"
python3 - "$RESULTS" "$SMALL" "$LARGE" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
small, large = sys.argv[2], sys.argv[3]
res = {}
for r in rows:
    if r[0] == "RESULT":
        size, ep = r[1].split("/")
        res[(size, ep)] = dict(rps=float(r[2]), p50=float(r[3]), p99=float(r[4]), non2xx=int(r[6]), cpu=float(r[9]), rss=r[10])
print("| endpoint | users | req/s | p50 ms | p99 ms | non-2xx | CPU µs/req | RSS MB after |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for ep in ("user", "refresh", "login"):
    for size in (small, large):
        x = res.get((size, ep))
        if x:
            print(f"| {ep} | {size} | {x['rps']:.0f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['non2xx']} | {x['cpu']:.1f} | {x['rss']} |")
print()
for ep in ("user", "refresh", "login"):
    a, b = res.get((small, ep)), res.get((large, ep))
    if a and b:
        print(f"{ep}: {large}/{small} req/s {b['rps'] / a['rps']:.2f}, p99 {b['p99'] / a['p99']:.2f}, CPU/req {b['cpu'] / a['cpu']:.2f}")
for r in rows:
    if r[0] in ("START", "IMPORT", "DISK", "END"):
        print(" ".join(r))
PY
