#!/usr/bin/env bash
# Server CPU per request (issue 13): one release server, wrk against each endpoint in turn, and
# the server's utime+stime (/proc/<pid>/stat) before and after each run divided by the requests
# wrk counted. CPU per request is robust to the noise of a shared box; req/s is not.
#
#   SKIP_BUILD=1 CONNS=32 ENDPOINTS="health user refresh" bench/cpu.sh
#   PROFILE=perf ENDPOINTS=refresh bench/cpu.sh        # also `perf record -g` the server per run
#
# Environment: DURATION [10s], THREADS [2], CONNS [32], POOL [2*CONNS], ENDPOINTS ["health user
# refresh"; also password], MODE [sync] (FERROTRUE_DURABILITY), ROUNDS [1], LOG_LEVEL [info], PROFILE [none|perf],
# OUT [a temp directory: server log, wrk output, perf data], METRICS [0] (1 = enable the Prometheus
# exporter and print the mean group-commit batch and sync time per run; costs CPU of its own),
# CEILING [unset] a bare hyper + HS256 server binary (PORT, JWT_SECRET, BODY_FILE): endpoint
# `ceiling` runs user.lua against it, answering this server's GET /user body, as the control.
# Reuses bench/load.sh's Lua scripts and raised per-client limits (wrk is one client).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
POOL=${POOL:-$((CONNS * 2))}
ENDPOINTS=${ENDPOINTS:-"health user refresh"}
MODE=${MODE:-sync}
ROUNDS=${ROUNDS:-1}
LOG_LEVEL=${LOG_LEVEL:-info}
PROFILE=${PROFILE:-none}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-cpu.XXXXXX")}
BIN=${BIN:-$ROOT/target/release/ferrotrue}
JWT_SECRET="load-bench-secret-that-is-long-enough-for-hs256"
PASSWORD="bench-password-1234"
mkdir -p "$OUT"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --bin ferrotrue)
fi

METRICS=${METRICS:-0}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
MPORT=$(free_port)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE="http://127.0.0.1:$PORT"
rm -rf "$OUT/data" && mkdir -p "$OUT/data"
env PORT="$PORT" GOTRUE_API_HOST=127.0.0.1 FERROTRUE_DATA_DIR="$OUT/data" FERROTRUE_DURABILITY="$MODE" \
    GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true GOTRUE_LOG_LEVEL="$LOG_LEVEL" \
    GOTRUE_RATE_LIMIT_OTP=1000000000 GOTRUE_RATE_LIMIT_VERIFY=1000000000 \
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH=1000000000 GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=1000000000 \
    FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=1000000000 FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=1000000000 \
    GOTRUE_METRICS_ENABLED=$([ "$METRICS" = 1 ] && echo true || echo false) GOTRUE_METRICS_EXPORTER=prometheus \
    OTEL_EXPORTER_PROMETHEUS_PORT="$MPORT" \
    "$BIN" >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -fs "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
export EMAIL="cpu-bench@example.com" PASSWORD
ACCESS_TOKEN=$(curl -fsS -X POST "$BASE/signup" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field access_token)

batch() { # mean group-commit batch and sync ms so far: "<sum> <count> <sync_sum>"
    [ "$METRICS" = 1 ] || return 0
    curl -fs "http://127.0.0.1:$MPORT/metrics" | awk '/^ferrotrue_storage_group_commit_batch_sum/ {s=$2}
        /^ferrotrue_storage_group_commit_batch_count/ {c=$2} /^ferrotrue_storage_sync_seconds_sum/ {t=$2}
        END {print s+0, c+0, t+0}'
}
curl -fsS "$BASE/user" -H "Authorization: Bearer $ACCESS_TOKEN" >"$OUT/user.json"
CPID=
if [ -n "${CEILING:-}" ]; then
    CPORT=$(free_port)
    PORT=$CPORT JWT_SECRET="$JWT_SECRET" BODY_FILE="$OUT/user.json" "$CEILING" >"$OUT/ceiling.log" 2>&1 &
    CPID=$!
    trap 'kill -TERM $PID $CPID 2>/dev/null; wait $PID $CPID 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$CPORT/" && break; sleep 0.1; done
fi
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$TARGET/stat"; }
TICK=$(getconf CLK_TCK)

printf '%-8s %10s %8s %8s %9s %12s %8s\n' endpoint req/s p50_ms p99_ms requests cpu_us/req rss_mb
for round in $(seq 1 "$ROUNDS"); do
    for ep in $ENDPOINTS; do
        args=()
        TARGET=$PID URL=$BASE
        case $ep in
        ceiling) script=user.lua path=/user TARGET=$CPID URL="http://127.0.0.1:$CPORT" ;;
        health) script=health.lua path=/health ;;
        user) script=user.lua path=/ ;;
        password) script=password.lua path=/ ;; # a login flood (EMAIL/PASSWORD exported below)
        refresh)
            script=refresh.lua path=/
            : >"$OUT/tokens.txt"
            for _ in $(seq 1 "$POOL"); do
                curl -fsS -X POST "$BASE/token?grant_type=password" -H 'Content-Type: application/json' \
                    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field refresh_token >>"$OUT/tokens.txt"
            done
            args=(-- "$OUT/tokens.txt" "$THREADS")
            ;;
        *) echo "cpu.sh: unknown endpoint $ep" >&2; exit 1 ;;
        esac
        perf_pid=
        if [ "$PROFILE" = perf ]; then
            perf record -F 999 -g -p "$TARGET" -o "$OUT/perf-$ep-$round.data" >/dev/null 2>&1 &
            perf_pid=$!
            sleep 0.5
        fi
        mb=$(batch)
        before=$(cpu_ticks)
        ACCESS_TOKEN="$ACCESS_TOKEN" BENCH_NAME="$ep" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s \
            -s "$BENCH_DIR/$script" "$URL$path" "${args[@]}" >"$OUT/wrk-$ep-$round.txt" 2>&1
        after=$(cpu_ticks)
        ma=$(batch)
        if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
        rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$TARGET/status")
        read -r _ _ rps p50 p99 n non2xx _ < <(grep '^RESULT ' "$OUT/wrk-$ep-$round.txt")
        cpu=$(python3 -c "print(f'{($after - $before) / $TICK * 1e6 / max($n, 1):.1f}')")
        printf '%-8s %10s %8s %8s %9s %12s %8s%s\n' "$ep" "$rps" "$p50" "$p99" "$n" "$cpu" "$rss" \
            "$([ "$non2xx" = 0 ] || echo " non-2xx=$non2xx")$([ "$METRICS" = 1 ] && python3 -c "
b, a = [float(x) for x in '$mb'.split()], [float(x) for x in '$ma'.split()]
n = max(a[1] - b[1], 1)
print(f' syncs={n:.0f} batch={(a[0] - b[0]) / n:.1f} sync_ms={(a[2] - b[2]) / n * 1e3:.2f}')")"
    done
done
echo "(output in $OUT)"
