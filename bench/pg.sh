#!/usr/bin/env bash
# The Postgres benchmarks (issue 12), in one run: ferrotrue on sled, on one and on two Postgres-backed
# nodes, and a bare server doing the least database work per request, on the same machine.
#
#   bench/pg.sh                                     # build (release + ceiling), run everything
#   BIN=/path/to/ferrotrue SKIP_BUILD=1 bench/pg.sh
#   CONFIGS="sled ceiling" SCENARIOS="user refresh" DURATION=5 bench/pg.sh
#
# Configurations (CONFIGS, default all; each (scenario, configuration) gets a FRESH server and, on
# Postgres, a FRESH database of one throw-away cluster, tests/pg/cluster.sh, migrated with
# `$BIN db migrate`):
#   sled     one ferrotrue node on sled (FERROTRUE_DURABILITY=sync)
#   pg1      one ferrotrue node on Postgres
#   pg2      two ferrotrue nodes on the same database; one wrk per node (half the threads and
#            connections each, refresh chains split between them), rates summed
#   ceiling  bench/ceiling `serve-pg` (bare hyper + HS256 + tokio-postgres/deadpool, same pool size):
#            GET /user = JWT + ONE indexed query; refresh = ONE short transaction (SELECT … FOR
#            UPDATE, revoke, insert the child, COMMIT) on GoTrue's refresh_tokens; user and refresh only
# Scenarios (SCENARIOS, default "user refresh login signup"; the wrk scripts of bench/all.sh):
#   user     GET /user with a bearer token, CONNS connections                 ratio to: ceiling
#   refresh  POST /token?grant_type=refresh_token, POOL chains, CONNS conns   ratio to: ceiling
#   login    POST /token?grant_type=password, one user, LOGIN_CONNS conns     ratio to: sled
#   signup   POST /signup, unique emails, SIGNUP_CONNS connections            ratio to: sled
# The target of issue 12: pg1 and pg2 at >= 0.5 of the ceiling for GET /user and refresh.
#
# Printed per row: req/s, ok/s (2xx), ratio, p50/p99 (the worse of the two wrk runs for pg2),
# server CPU per request ((utime+stime) of ferrotrue or the ceiling, both nodes for pg2, divided
# by all requests answered), Postgres CPU per request (the postmaster's utime+stime+cutime+cstime
# plus its live children's utime+stime, from /proc) and the two together.
#
# Durability: Postgres runs with fsync, synchronous_commit and full_page_writes ON (PG_DURABLE=1,
# the default; PG_DURABLE=0 = the test cluster's fsync off) and sled with FERROTRUE_DURABILITY=sync:
# every configuration replies after its commit reached the disk.
#
# Environment (defaults in brackets):
#   BIN [build, then target/release/ferrotrue]   CEILING_BIN [build, then target/ceiling/ferrotrue-ceiling]
#   SKIP_BUILD [0]  1 = use existing binaries     PG_DURABLE [1]   POOL_SIZE [4*cores] GOTRUE_DB_MAX_POOL_SIZE
#   DURATION [10]   THREADS [2]   CONNS [64]   LOGIN_CONNS [64]   SIGNUP_CONNS [8]   POOL [2*CONNS]
#   DURABILITY [sync] (sled)   LOG_LEVEL [info]   WRK_TIMEOUT [10s]   KEEP_LOGS [0]
# Requires wrk, curl, python3, PostgreSQL (tests/pg/cluster.sh installs it as root). 127.0.0.1 only;
# data directories and the cluster under TMPDIR (default /tmp; keep it off tmpfs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
LOGIN_CONNS=${LOGIN_CONNS:-64}
SIGNUP_CONNS=${SIGNUP_CONNS:-8}
POOL=${POOL:-$((CONNS * 2))}
POOL_SIZE=${POOL_SIZE:-$(($(nproc) * 4))}
PG_DURABLE=${PG_DURABLE:-1}
DURABILITY=${DURABILITY:-sync}
LOG_LEVEL=${LOG_LEVEL:-info}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
KEEP_LOGS=${KEEP_LOGS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
CONFIGS=${CONFIGS:-"sled pg1 pg2 ceiling"}
SCENARIOS=${SCENARIOS:-"user refresh login signup"}
SCRIPT=pg.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

require_tools wrk curl python3
for n in "$CONNS" "$LOGIN_CONNS" "$SIGNUP_CONNS"; do
    [ "$n" -ge $((THREADS * 2)) ] || { echo "pg.sh: every *CONNS must be >= 2*THREADS (two nodes)" >&2; exit 1; }
done

build_binaries

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-pg.XXXXXX")
RESULTS="$WORK/results"
: >"$RESULTS"
PIDS=()  # the servers of the current configuration
BASES=() # their base URLs
NAME=""
ACCESS_TOKEN=""
PG_DIR=""
CLK_TCK=$(getconf CLK_TCK)

stop_servers() { # SIGTERM (graceful), SIGKILL after 10 s
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    BASES=()
}

cleanup() {
    local rc=$?
    stop_servers
    jobs -p | xargs -r kill 2>/dev/null || true
    [ -z "$PG_DIR" ] || "$ROOT/tests/pg/cluster.sh" stop "$PG_DIR" || true
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" != 0 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive() { # alive: 0 when every server of the configuration runs; else prints the end of the dead one's log
    local i
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            echo "pg.sh: the server $NAME#$i is gone; end of its log:" >&2
            tail -n 20 "$WORK/server-$NAME-$i.log" >&2
            return 1
        fi
    done
}

wait_status() { # wait_status <url> <status>: 0 once <url> answers <status>, 1 when a server died or after 30 s
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = "$2" ] && return 0
        alive || return 1
        sleep 0.1
    done
    echo "pg.sh: $NAME did not answer $1 with $2 within 30 s" >&2
    return 1
}

# A fresh database of the cluster, with GoTrue's schema (`$BIN db migrate`); sets DB_URL.
fresh_database() { # fresh_database <name>
    DB_URL="${PG_URL%/*}/$1?sslmode=disable"
    "$PG_BIN/psql" "${PG_URL%/*}/postgres?sslmode=disable" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $1" >/dev/null
    GOTRUE_DB_DATABASE_URL="$DB_URL" "$BIN" db migrate >"$WORK/migrate-$1.log" 2>&1 ||
        { echo "pg.sh: ferrotrue db migrate failed:" >&2; cat "$WORK/migrate-$1.log" >&2; exit 1; }
}

start_node() { # start_node <data env...>: one more ferrotrue server of configuration $NAME
    local port i=${#PIDS[@]}
    port=$(free_port)
    env PORT="$port" GOTRUE_API_HOST=127.0.0.1 GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true \
        GOTRUE_LOG_LEVEL="$LOG_LEVEL" "${RAISED_LIMITS[@]}" "$@" \
        "$BIN" >"$WORK/server-$NAME-$i.log" 2>&1 &
    PIDS+=($!)
    BASES+=("http://127.0.0.1:$port")
    wait_status "http://127.0.0.1:$port/health" 200
}

# start <config> <scenario>: the servers of one row, fresh; 1 when one did not come up.
start() {
    NAME="$1-$2"
    local db="bench_${1}_$2"
    case $1 in
    sled)
        mkdir -p "$WORK/data-$NAME"
        start_node FERROTRUE_DATA_DIR="$WORK/data-$NAME" FERROTRUE_DURABILITY="$DURABILITY"
        ;;
    pg1 | pg2)
        fresh_database "$db"
        local n=1
        [ "$1" = pg2 ] && n=2
        for _ in $(seq 1 "$n"); do
            start_node GOTRUE_DB_DATABASE_URL="$DB_URL" GOTRUE_DB_MAX_POOL_SIZE="$POOL_SIZE" || return 1
        done
        ;;
    ceiling)
        fresh_database "$db"
        ACCESS_TOKEN=$(GOTRUE_DB_DATABASE_URL="$DB_URL" GOTRUE_JWT_SECRET="$JWT_SECRET" \
            "$CEILING_BIN" seed-pg "$POOL" "$WORK/tokens-$NAME.txt")
        local port
        port=$(free_port)
        GOTRUE_DB_DATABASE_URL="$DB_URL" GOTRUE_DB_MAX_POOL_SIZE="$POOL_SIZE" GOTRUE_JWT_SECRET="$JWT_SECRET" \
            "$CEILING_BIN" serve-pg "127.0.0.1:$port" >"$WORK/server-$NAME-0.log" 2>&1 &
        PIDS+=($!)
        BASES+=("http://127.0.0.1:$port")
        wait_status "http://127.0.0.1:$port/user" 401
        ;;
    esac
}

ticks() { # ticks <pid...>: utime+stime
    local pid t=0
    for pid in "$@"; do
        t=$((t + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}

pg_ticks() { # Postgres' CPU: the postmaster (with its reaped children) and its live children
    [ -n "$PG_DIR" ] || { echo -; return; }
    python3 - "$(head -n 1 "$PG_DIR/data/postmaster.pid")" <<'PY'
import os, sys
pm, total = int(sys.argv[1]), 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    if int(p) == pm:
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    elif int(f[1]) == pm:
        total += int(f[11]) + int(f[12])
print(total)
PY
}

create_login_user() { # through the first server; sets ACCESS_TOKEN
    local body
    body=$(curl -fsS -X POST "${BASES[0]}/signup" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}")
    ACCESS_TOKEN=$(printf '%s' "$body" | json_field access_token)
}

# measure <scenario> <conns> <script> [token file]: one wrk per server, started together, CPU of the
# servers and of Postgres around them. Records one line in $RESULTS:
#   <config-scenario> <conns> <req/s> <p50> <p99> <requests> <non-2xx> <sock err> <note> <server ticks> <pg ticks> <secs>
measure() {
    local scenario=$1 conns=$2 script=$3 tokens=${4:-} n=${#PIDS[@]} i s_before s_after p_before p_after
    local t=$((THREADS / n)) c=$((conns / n)) wrks=()
    [ "$t" -ge 1 ] || t=1
    s_before=$(ticks "${PIDS[@]}")
    p_before=$(pg_ticks)
    for i in "${!BASES[@]}"; do
        local args=() out="$WORK/wrk-$NAME-$i.txt"
        if [ -n "$tokens" ]; then # node i gets every n-th chain
            awk -v n="$n" -v i="$i" 'NF && (NR - 1) % n == i' "$tokens" >"$tokens.$i"
            args=(-- "$tokens.$i" "$t")
        fi
        echo "-- $NAME#$i: wrk -t$t -c$c -d${DURATION}s -s bench/$script ${BASES[$i]}/ ${args[*]}"
        BENCH_NAME="$NAME" RUN_ID="pg$$-$NAME-$i" ACCESS_TOKEN="$ACCESS_TOKEN" EMAIL="$EMAIL" PASSWORD="$PASSWORD" \
            wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" -s "$BENCH_DIR/$script" "${BASES[$i]}/" \
            "${args[@]}" >"$out" 2>&1 &
        wrks+=($!)
    done
    for i in "${!wrks[@]}"; do
        wait "${wrks[$i]}" || { echo "pg.sh: wrk failed for $NAME#$i:" >&2; cat "$WORK/wrk-$NAME-$i.txt" >&2; exit 1; }
    done
    s_after=$(ticks "${PIDS[@]}")
    p_after=$(pg_ticks)
    alive || exit 1
    local pg="-"
    [ "$p_before" = - ] || [ "${NAME%%-*}" = sled ] || pg=$((p_after - p_before))
    # RESULT <name> <req/s> <p50> <p99> <requests> <non-2xx> <sock err> <note>, summed over the wrk runs
    cat "$WORK"/wrk-"$NAME"-*.txt | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.startswith("RESULT ")]
if not rows:
    sys.exit("pg.sh: no result from wrk")
s = lambda k, f: f(r[k] for r in rows)
notes = ",".join(r[8] for r in rows if r[8] != "-") or "-"
print(s(2, lambda v: sum(map(float, v))), s(3, lambda v: max(map(float, v))), s(4, lambda v: max(map(float, v))),
      s(5, lambda v: sum(map(int, v))), s(6, lambda v: sum(map(int, v))), s(7, lambda v: sum(map(int, v))), notes)
' >"$WORK/sum-$NAME" || { cat "$WORK"/wrk-"$NAME"-*.txt >&2; exit 1; }
    echo "$NAME $conns $(cat "$WORK/sum-$NAME") $((s_after - s_before)) $pg $DURATION" | tee -a "$RESULTS"
}

echo "== binary $BIN; ceiling $CEILING_BIN; work dir $WORK"
if [ -n "$(echo "$CONFIGS" | tr ' ' '\n' | grep -vx 'sled\|')" ]; then
    echo "== PostgreSQL: tests/pg/cluster.sh start (PG_DURABLE=$PG_DURABLE)"
    PG_DIR=$(PG_DURABLE="$PG_DURABLE" "$ROOT/tests/pg/cluster.sh" start)
    PG_URL=$("$ROOT/tests/pg/cluster.sh" url "$PG_DIR")
    PG_BIN=$(cat "$PG_DIR/bin")
    "$PG_BIN/psql" "$PG_URL" -Atc "SELECT split_part(version(), ' on ', 1) || ', ' || string_agg(name || '=' || current_setting(name), ' ')
        FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers')" \
        >"$WORK/pg-version"
    echo "   $(cat "$WORK/pg-version")"
fi
for scenario in $SCENARIOS; do
    for config in $CONFIGS; do
        case $config/$scenario in
        ceiling/login | ceiling/signup) continue ;;
        sled/* | pg1/* | pg2/* | ceiling/*) ;;
        *) echo "pg.sh: unknown configuration or scenario $config/$scenario" >&2; exit 1 ;;
        esac
        echo "== $config $scenario"
        if ! start "$config" "$scenario"; then
            echo "pg.sh: $config did not start; no $scenario row for it" >&2
            echo "$config-$scenario - FAILED" >>"$RESULTS"
            stop_servers
            continue
        fi
        case $config/$scenario in
        ceiling/user) measure user "$CONNS" user.lua ;;
        ceiling/refresh) measure refresh "$CONNS" refresh.lua "$WORK/tokens-$NAME.txt" ;;
        */user)
            create_login_user
            measure user "$CONNS" user.lua
            ;;
        */refresh)
            create_login_user
            create_refresh_pool "${BASES[0]}" "$WORK/tokens-$NAME.txt"
            measure refresh "$CONNS" refresh.lua "$WORK/tokens-$NAME.txt"
            ;;
        */login)
            create_login_user
            measure login "$LOGIN_CONNS" password.lua
            ;;
        */signup) measure signup "$SIGNUP_CONNS" signup.lua ;;
        esac
        stop_servers
    done
done

echo
echo "== summary"
python3 - "$RESULTS" "$BIN" "$CLK_TCK" "$DURATION" "$THREADS" "$DURABILITY" "$LOG_LEVEL" "$POOL_SIZE" \
    "$(cat "$WORK/pg-version" 2>/dev/null || true)" <<'PY'
import os, platform, sys
res, binp, tck, dur, thr, durab, loglvl, pool, pgv = sys.argv[1:10]
tck = int(tck)
rows, order, failed = {}, [], []
for l in open(res):
    p = l.split()
    if len(p) == 3 and p[2] == "FAILED":
        failed.append(p[0])
        continue
    if len(p) != 12:
        continue
    label, conns, rps, p50, p99, n, non2xx, sockerr, note, sticks, pticks, secs = p
    rps, n, non2xx = float(rps), int(n), int(non2xx)
    ok = rps * (n - non2xx) / n if n else 0.0
    us = lambda t: None if t == "-" or n == 0 else int(t) * 1e6 / tck / n
    rows[label] = dict(conns=conns, rps=rps, ok=ok, p50=p50, p99=p99, non2xx=non2xx, sockerr=sockerr, note=note,
                       scpu=us(sticks), pcpu=us(pticks))
    order.append(label)
load = os.getloadavg()[0]
print(f"machine: {os.cpu_count()} CPUs, kernel {platform.release()}; load average at the end {load:.1f}")
print(f"binary: {binp}; wrk -t{thr} per configuration (split between the nodes of pg2), {dur} s per run")
print(f"sled: FERROTRUE_DURABILITY={durab}; Postgres: {pgv or '-'}; pool {pool} connections per server; "
      f"GOTRUE_LOG_LEVEL={loglvl}")
print()
fmtcpu = lambda v: "-" if v is None else f"{v:.1f}"
hdr = ("row", "conns", "req/s", "ok/s", "ratio", "p50 ms", "p99 ms", "non-2xx", "server µs/req", "PG µs/req",
       "total µs/req", "note")
table = []
for label in order:
    r = rows[label]
    config, scenario = label.split("-", 1)
    ref = ("ceiling" if scenario in ("user", "refresh") else "sled") if config in ("pg1", "pg2") else None
    base = rows.get(f"{ref}-{scenario}") if ref else None
    ratio, note = "-", ([r["note"]] if r["note"] != "-" else [])
    total = None if r["scpu"] is None else r["scpu"] + (r["pcpu"] or 0)
    if base and base["ok"] > 0:
        x = r["ok"] / base["ok"]
        ratio = f"{x:.2f} of {ref}"
        if ref == "ceiling":
            note.append("target met" if x >= 0.5 else "BELOW 0.5")
        btotal = None if base["scpu"] is None else base["scpu"] + (base["pcpu"] or 0)
        if total and btotal:
            note.append(f"CPU/req = {total / btotal:.1f}x {ref}'s")
    if r["sockerr"] != "0":
        note.append(f"sockerr={r['sockerr']}")
    table.append((label, r["conns"], f"{r['rps']:,.1f}", f"{r['ok']:,.1f}", ratio, r["p50"], r["p99"], r["non2xx"],
                  fmtcpu(r["scpu"]), fmtcpu(r["pcpu"]), fmtcpu(total), " ".join(note) or "-"))
for f in failed:
    table.append((f, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "did not start"))
w = [max(len(str(x[i])) for x in table + [hdr]) for i in range(len(hdr))]
left = (0, 4, 11)
fmt = lambda x: "| " + " | ".join(str(v).ljust(w[i]) if i in left else str(v).rjust(w[i]) for i, v in enumerate(x)) + " |"
print(fmt(hdr))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for t in table:
    print(fmt(t))
print()
print("ratio = ok/s (2xx) / the same scenario's: GET /user and refresh vs the Postgres ceiling (target >= 0.5),")
print("login and signup vs sled. server = ferrotrue's (both nodes for pg2) or the ceiling's utime+stime / requests;")
print("PG = the postgres processes' CPU / requests. On a busy machine prefer the CPU/req ratios in the notes.")
PY
