#!/usr/bin/env bash
# HTTP load benchmark of the release binary with wrk, on 127.0.0.1 only.
#
#   bench/load.sh                      # build, then every endpoint against sync and relaxed
#   DURATION=30s CONNS=32 ROUNDS=3 bench/load.sh
#
# Environment (defaults in brackets):
#   DURATION [10s]   wrk -d per run        THREADS [2]  wrk -t        CONNS [16]  wrk -c
#   WRK_TIMEOUT [10s] wrk --timeout        POOL [2*CONNS] refresh chains created before each run
#   MODES ["sync relaxed"]   one server per FERROTRUE_DURABILITY value, each with its own data dir
#   ENDPOINTS ["health signup password user refresh"]
#   ROUNDS [1]       repeat the whole sequence; the summary shows medians over rounds
#   SKIP_BUILD [0]   1 = use the existing target/release/ferrotrue
#   BIN [target/release/ferrotrue] another binary to measure (an older build); no build when set
#   KEEP_LOGS [0]    1 = keep the temp directory (server logs, wrk output); kept anyway on failure
#   LOG_LEVEL [info] GOTRUE_LOG_LEVEL of the servers (info = the default, one access line per request)
#
# wrk sends everything from 127.0.0.1, one client: the per-client rate limits (on by default, see
# SECURITY.md) are raised so the benchmark measures the work, not the refusals. The hash queue
# (FERROTRUE_HASH_QUEUE, 8 per core) still sheds password load beyond ~16 waiting hashes on 2 cores.
#
# Every server is started up front (an idle one costs nothing) and each endpoint is run against
# the modes back to back, so a sync/relaxed ratio compares runs seconds apart, not minutes apart.
# Data directories live under TMPDIR (default /tmp): keep that off tmpfs, or "sync" syncs to RAM.
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
ROUNDS=${ROUNDS:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_LOGS=${KEEP_LOGS:-0}
LOG_LEVEL=${LOG_LEVEL:-info}
RAISED_LIMITS=(
    GOTRUE_RATE_LIMIT_OTP=1000000000 GOTRUE_RATE_LIMIT_VERIFY=1000000000
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH=1000000000 GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=1000000000
    FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=1000000000 FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=1000000000
)
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
declare -A PID BASE EMAIL ACCESS_TOKEN

stop_server() { # stop_server <mode>: SIGTERM (graceful), SIGKILL after 10 s
    local pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    PID[$1]=""
}

cleanup() {
    local rc=$?
    for mode in "${!PID[@]}"; do stop_server "$mode"; done
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" != 0 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$SKIP_BUILD" != 1 ] && [ -z "${BIN:-}" ]; then
    echo "== cargo build --release"
    (cd "$ROOT" && cargo build --release --bin ferrotrue)
fi
BIN=${BIN:-$ROOT/target/release/ferrotrue}
[ -x "$BIN" ] || { echo "load.sh: $BIN not found (build failed, or SKIP_BUILD=1 without a build)" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

json_field() { # json_field <field>  (JSON on stdin)
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

start_server() { # start_server <durability>
    local mode=$1 port data
    port=$(free_port)
    data="$WORK/data-$mode"
    mkdir -p "$data"
    BASE[$mode]="http://127.0.0.1:$port"
    env PORT="$port" GOTRUE_API_HOST=127.0.0.1 \
        FERROTRUE_DATA_DIR="$data" FERROTRUE_DURABILITY="$mode" \
        GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true \
        GOTRUE_LOG_LEVEL="$LOG_LEVEL" \
        "${RAISED_LIMITS[@]}" \
        "$BIN" >"$WORK/server-$mode.log" 2>&1 &
    PID[$mode]=$!
    for _ in $(seq 1 300); do
        if curl -fs "${BASE[$mode]}/health" >/dev/null 2>&1; then
            echo "== server up on ${BASE[$mode]} (FERROTRUE_DURABILITY=$mode, pid ${PID[$mode]}, data $data)"
            return 0
        fi
        check_server "$mode"
        sleep 0.1
    done
    echo "load.sh: server ($mode) did not answer /health within 30 s" >&2
    exit 1
}

# Fails loudly if a server is gone: its exit status and the end of its log.
check_server() { # check_server <mode>
    local pid=${PID[$1]}
    if ! kill -0 "$pid" 2>/dev/null; then
        local rc=0
        wait "$pid" || rc=$?
        PID[$1]=""
        echo "load.sh: the server ($1) is gone, exit status $rc; end of its log:" >&2
        tail -n 20 "$WORK/server-$1.log" >&2
        exit 1
    fi
}

server_rss_mb() { # server_rss_mb <mode>
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/${PID[$1]}/status" 2>/dev/null || echo "?"
}

run_wrk() { # run_wrk <mode> <endpoint> <script> <path> [-- script args...]
    local mode=$1 name=$2 script=$3 path=$4
    shift 4
    local url="${BASE[$mode]}$path" out="$WORK/wrk-$mode-$name-$ROUND.txt"
    echo "-- $name ($mode): wrk -t$THREADS -c$CONNS -d$DURATION --timeout $WRK_TIMEOUT -s bench/$script $url $*"
    check_server "$mode"
    BENCH_NAME="$mode/$name" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout "$WRK_TIMEOUT" \
        -s "$BENCH_DIR/$script" "$url" "$@" >"$out" 2>&1 || {
        echo "load.sh: wrk failed for $name ($mode):" >&2
        cat "$out" >&2
        exit 1
    }
    local line
    line=$(grep '^RESULT ' "$out" || true)
    if [ -z "$line" ]; then
        echo "load.sh: no result from wrk for $name ($mode):" >&2
        cat "$out" >&2
        exit 1
    fi
    check_server "$mode"
    echo "$line $(server_rss_mb "$mode")" | tee -a "$RESULTS"
}

# A confirmed user for the password grant and GET /user (autoconfirm: signup returns a session).
create_login_user() { # create_login_user <mode>
    local mode=$1 body
    EMAIL[$mode]="login-$mode@example.com"
    body=$(curl -fsS -X POST "${BASE[$mode]}/signup" -H 'Content-Type: application/json' \
        -d "{\"email\":\"${EMAIL[$mode]}\",\"password\":\"$PASSWORD\"}")
    ACCESS_TOKEN[$mode]=$(printf '%s' "$body" | json_field access_token)
}

# POOL independent sessions (one password grant each): the refresh chains of one run.
create_refresh_pool() { # create_refresh_pool <mode> <file>
    local mode=$1 file=$2
    : >"$file"
    for _ in $(seq 1 "$POOL"); do
        curl -fsS -X POST "${BASE[$mode]}/token?grant_type=password" -H 'Content-Type: application/json' \
            -d "{\"email\":\"${EMAIL[$mode]}\",\"password\":\"$PASSWORD\"}" | json_field refresh_token >>"$file"
    done
}

for mode in $MODES; do
    start_server "$mode"
    create_login_user "$mode"
done

for ROUND in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" = 1 ] || echo "== round $ROUND of $ROUNDS"
    for endpoint in $ENDPOINTS; do
        for mode in $MODES; do
            case $endpoint in
            health) run_wrk "$mode" health health.lua /health ;;
            signup) RUN_ID="$mode$ROUND$$" PASSWORD="$PASSWORD" run_wrk "$mode" signup signup.lua / ;;
            password) EMAIL="${EMAIL[$mode]}" PASSWORD="$PASSWORD" run_wrk "$mode" password password.lua / ;;
            user) ACCESS_TOKEN="${ACCESS_TOKEN[$mode]}" run_wrk "$mode" user user.lua / ;;
            refresh)
                check_server "$mode"
                create_refresh_pool "$mode" "$WORK/tokens-$mode-$ROUND.txt"
                run_wrk "$mode" refresh refresh.lua / -- "$WORK/tokens-$mode-$ROUND.txt" "$THREADS"
                ;;
            *) echo "load.sh: unknown endpoint '$endpoint'" >&2; exit 1 ;;
            esac
        done
    done
done

for mode in $MODES; do stop_server "$mode"; done

echo
echo "== summary: wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s) (medians over rounds;"
echo "   closed loop, load generator on the same host; RSS = server RSS right after the run)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("RESULT ")]
order, runs = [], {}
for _, name, rps, p50, p99, n, st, se, note, rss in rows:
    mode, ep = name.split("/", 1)
    if (mode, ep) not in runs:
        order.append((mode, ep))
        runs[(mode, ep)] = []
    runs[(mode, ep)].append((float(rps), float(p50), float(p99), int(n), int(st), int(se), note, rss))
# Group rows by endpoint, modes in the order they ran.
first_seen = [e for _, e in order]
order.sort(key=lambda k: first_seen.index(k[1]))
hdr = ("endpoint", "durability", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx", "sock err", "RSS MB", "note")
table = []
med = {}
for key in order:
    r = runs[key]
    rps = statistics.median(x[0] for x in r)
    med[key] = rps
    notes = ",".join(sorted({x[6] for x in r} - {"-"})) or "-"
    table.append((key[1], key[0], f"{rps:.1f}", f"{statistics.median(x[1] for x in r):.2f}",
                  f"{statistics.median(x[2] for x in r):.2f}", sum(x[3] for x in r), sum(x[4] for x in r),
                  sum(x[5] for x in r), "/".join(x[7] for x in r), notes))
w = [max(len(str(x[i])) for x in table + [hdr]) for i in range(len(hdr))]
def fmt(x):
    return "| " + " | ".join(str(v).ljust(w[i]) if i in (0, 1, 9) else str(v).rjust(w[i]) for i, v in enumerate(x)) + " |"
print(fmt(hdr))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for t in table:
    print(fmt(t))
eps = []
for _, ep in order:
    if ep not in eps:
        eps.append(ep)
ratios = [(ep, med[("sync", ep)] / med[("relaxed", ep)]) for ep in eps
          if ("sync", ep) in med and ("relaxed", ep) in med and med[("relaxed", ep)] > 0]
if ratios:
    print()
    print("sync/relaxed throughput: " + ", ".join(f"{ep} {r:.2f}" for ep, r in ratios))
PY
