#!/usr/bin/env bash
# Memory and login-storm latency of the release binary (issue 13, "perf-mem"), 127.0.0.1 only.
#
#   bench/mem_storm.sh                 # cargo build --release, then every scenario below
#   SKIP_BUILD=1 SCENARIOS="idle probe" bench/mem_storm.sh
#
# Each scenario gets a fresh server and data directory (GOTRUE_LOG_LEVEL=info, sync durability),
# so one scenario's memory never shows up in another's figure:
#   idle     RSS 3 s after start (and after one GET /health), fresh data directory
#   signup   wrk -c8  signup.lua   for DURATION: RSS right after, and again 2 s later
#   login    wrk -c64 password.lua for DURATION (one user): RSS right after, and again 2 s later
#   probe    GET /user (wrk -t1 -c1) alone for DURATION, then the same probe while wrk -c64
#            password.lua runs against the same server (both at once); p50/p99 of each, the
#            login throughput during the storm, server CPU per GET /user when alone, and the
#            tokio workers' average run-queue wait per time slice during the storm (schedstat)
#   argon    hash rate alone: wrk -c16 password.lua for DURATION (logins/s = argon2id verifies/s)
#
# Environment: DURATION [10s], SCENARIOS ["idle signup login probe argon"], SKIP_BUILD [0],
# SERVER_ENV [""] (extra VAR=value for the server, e.g. "FERROTRUE_HASH_THREADS=1"),
# KEEP_LOGS [0], BIN [target/release/ferrotrue], RENICE [""] (see renice_hashers). Prints one line per figure, "MEM <scenario> <key>=<value> ...".
# RSS = VmRSS of /proc/<pid>/status, HWM = VmHWM (peak). Requires wrk, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
DURATION=${DURATION:-10s}
SCENARIOS=${SCENARIOS:-"idle signup login probe argon"}
SKIP_BUILD=${SKIP_BUILD:-0}
SERVER_ENV=${SERVER_ENV:-}
KEEP_LOGS=${KEEP_LOGS:-0}
RENICE=${RENICE:-}
JWT_SECRET="load-bench-secret-that-is-long-enough-for-hs256"
PASSWORD="bench-password-1234"
RAISED_LIMITS=(
    GOTRUE_RATE_LIMIT_OTP=1000000000 GOTRUE_RATE_LIMIT_VERIFY=1000000000
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH=1000000000 GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=1000000000
    FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=1000000000 FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=1000000000
)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-mem.XXXXXX")
PID=""
cleanup() {
    local rc=$?
    stop_server
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" != 0 ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$SKIP_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release --bin ferrotrue)
fi
BIN=${BIN:-$ROOT/target/release/ferrotrue}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_server() {
    [ -n "$PID" ] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

start_server() { # start_server <name>
    local port data=$WORK/data-$1
    port=$(free_port)
    mkdir -p "$data"
    BASE="http://127.0.0.1:$port"
    # shellcheck disable=SC2086
    env PORT="$port" GOTRUE_API_HOST=127.0.0.1 FERROTRUE_DATA_DIR="$data" \
        GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true GOTRUE_LOG_LEVEL=info \
        "${RAISED_LIMITS[@]}" $SERVER_ENV "$BIN" >"$WORK/server-$1.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
        if curl -fs "$BASE/health" >/dev/null 2>&1; then
            [ -z "$RENICE" ] || renice_hashers
            return 0
        fi
        sleep 0.1
    done
    echo "mem_storm.sh: server did not start" >&2
    exit 1
}

# RENICE=<n>: set the hashing threads' nice value from outside (renice works per thread on
# Linux), to try priorities on a binary without rebuilding it.
renice_hashers() {
    local t
    for t in /proc/"$PID"/task/*; do
        case $(cat "$t/comm") in ferrotrue-hash-*) renice -n "$RENICE" -p "${t##*/}" >/dev/null ;; esac
    done
}

status() { awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
# Summed run-queue wait (ns) and time slices of the tokio workers (/proc/<pid>/task/*/schedstat).
worker_sched() {
    local t
    for t in /proc/"$PID"/task/*; do
        if [ "$(cat "$t/comm")" = tokio-rt-worker ]; then cat "$t/schedstat"; fi
    done | awk '{ wait += $2; slices += $3 } END { print wait, slices }'
}

mem() { echo "RSS=$(status VmRSS)MB HWM=$(status VmHWM)MB threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$PID/status")"; }

create_user() {
    ACCESS_TOKEN=$(curl -fsS -X POST "$BASE/signup" -H 'Content-Type: application/json' \
        -d "{\"email\":\"mem@example.com\",\"password\":\"$PASSWORD\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
}

wrk_run() { # wrk_run <out> <threads> <conns> <script>
    BENCH_NAME=$4 wrk -t"$2" -c"$3" -d"$DURATION" --timeout 10s -s "$BENCH_DIR/$4.lua" "$BASE/" >"$WORK/$1" 2>&1
    # RESULT <name> <req/s> <p50 ms> <p99 ms> <requests> <non-2xx> <socket errors> <note>
    awk '/^RESULT / { printf "req/s=%s ok/s=%.1f p50=%sms p99=%sms n=%s non2xx=%s sockerr=%s", $3, ($3 > 0 ? ($6 - $7) * $3 / $6 : 0), $4, $5, $6, $7, $8 }' "$WORK/$1"
}

for scenario in $SCENARIOS; do
    start_server "$scenario"
    case $scenario in
    idle)
        curl -fs "$BASE/health" >/dev/null
        sleep 3
        echo "MEM idle $(mem)"
        ;;
    signup)
        echo "MEM signup before $(mem)"
        r=$(RUN_ID="m$$" PASSWORD="$PASSWORD" wrk_run signup.txt 2 8 signup)
        echo "MEM signup after $(mem) $r"
        sleep 2
        echo "MEM signup after+2s $(mem)"
        ;;
    login)
        create_user
        echo "MEM login before $(mem)"
        r=$(EMAIL=mem@example.com PASSWORD="$PASSWORD" wrk_run login.txt 2 64 password)
        echo "MEM login after $(mem) $r"
        sleep 2
        echo "MEM login after+2s $(mem)"
        ;;
    probe)
        create_user
        t0=$(cpu_ticks)
        r=$(ACCESS_TOKEN="$ACCESS_TOKEN" wrk_run probe-alone.txt 1 1 user)
        t1=$(cpu_ticks)
        n=$(awk '/^RESULT / { print $6 }' "$WORK/probe-alone.txt")
        echo "MEM probe alone $r cpu_us_per_req=$(python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/max($n,1),1))")"
        EMAIL=mem@example.com PASSWORD="$PASSWORD" wrk_run probe-storm.txt 1 64 password >"$WORK/storm-line" &
        storm=$!
        sleep 0.5
        s0=$(worker_sched)
        r=$(ACCESS_TOKEN="$ACCESS_TOKEN" wrk_run probe-during.txt 1 1 user)
        s1=$(worker_sched)
        wait "$storm"
        # Average time a tokio worker waited for a core each time it became runnable.
        wait_us=$(echo "$s0 $s1" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? ($3 - $1) / d / 1000 : 0) }')
        echo "MEM probe during-storm $r worker_wait_us_per_slice=$wait_us"
        echo "MEM probe storm $(cat "$WORK/storm-line") $(mem)"
        ;;
    argon)
        create_user
        r=$(EMAIL=mem@example.com PASSWORD="$PASSWORD" wrk_run argon.txt 2 16 password)
        echo "MEM argon logins $r $(mem)"
        ;;
    *) echo "unknown scenario $scenario" >&2; exit 1 ;;
    esac
    stop_server
done
