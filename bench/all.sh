#!/usr/bin/env bash
# The one benchmark command: every scenario against the release binary, with its ceilings, in one run.
#
#   bench/all.sh                                   # build (release), run everything (~3 min)
#   BIN=/path/to/old/ferrotrue bench/all.sh        # the same run against another build (before/after)
#   SCENARIOS="user ceiling refresh" DURATION=20 bench/all.sh
#
# Scenarios (SCENARIOS, default all, in this order; each ferrotrue scenario gets a FRESH server and
# data directory, so its RSS figures do not depend on what ran before):
#   user     GET /user with a bearer token, CONNS connections                 ratio to: ceiling
#   ceiling  the same wrk against bench/ceiling (bare hyper 1.x + HS256, small JSON user)
#   refresh  POST /token?grant_type=refresh_token, POOL chains, CONNS conns   ratio to: ceiling
#   mixed    MIX_USER/MIX_REFRESH/MIX_LOGIN per mille GET /user/refresh/login, CONNS conns
#                                                                             ratio to: ceiling
#   argon2   raw argon2id, OWASP cost (m=19 MiB t=2 p=1), one thread per core, ARGON2_SECS
#   signup   POST /signup, unique emails, SIGNUP_CONNS connections            ratio to: argon2
#   login    POST /token?grant_type=password, one user, LOGIN_CONNS conns     ratio to: argon2
#   storm    GET /user probe (PROBE_CONNS conns, 1 wrk thread) alone for PROBE_ALONE s, then the
#            same probe while STORM_CONNS connections send password logins
#
# Printed per scenario: req/s, ok/s (2xx only: the hash queue sheds logins beyond it with 429),
# ratio to its ceiling, p50/p99, server CPU per request ((utime+stime) delta from /proc/<pid>/stat
# over the wrk run, divided by all requests it answered), VmRSS and VmHWM right after the run; and
# the binary's size, the idle RSS of a fresh server, the machine.
#
# Environment (defaults in brackets):
#   BIN [build, then target/release/ferrotrue]   the server binary to measure (no build when set)
#   CEILING_BIN [build, then target/ceiling/ferrotrue-ceiling]  (cargo --profile ceiling)
#   SKIP_BUILD [0]  1 = use the existing target/release binaries, do not run cargo
#   DURATION [10]   seconds per wrk run        THREADS [2]   wrk -t        CONNS [64]
#   SIGNUP_CONNS [8]   LOGIN_CONNS [64]   STORM_CONNS [64]   PROBE_CONNS [4]   PROBE_ALONE [5]
#   POOL [2*CONNS]  refresh chains created before refresh and mixed
#   MIX_REFRESH [50]  MIX_LOGIN [1]   per mille of mixed requests (the rest is GET /user)
#   ARGON2_SECS [5]  DURABILITY [sync]  LOG_LEVEL [info] (the server's default: one access line per request)
#   WRK_TIMEOUT [10s]  KEEP_LOGS [0]   1 = keep the temp directory (kept anyway on failure)
# Requires cargo (unless BIN, CEILING_BIN and SKIP_BUILD=1), wrk, curl, python3. 127.0.0.1 only;
# data directories under TMPDIR (default /tmp; keep it off tmpfs or "sync" syncs to RAM).
# The load generator shares the machine with the server: compare ratios within one run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_DIR="$ROOT/bench"
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SIGNUP_CONNS=${SIGNUP_CONNS:-8}
LOGIN_CONNS=${LOGIN_CONNS:-64}
STORM_CONNS=${STORM_CONNS:-64}
PROBE_CONNS=${PROBE_CONNS:-4}
PROBE_ALONE=${PROBE_ALONE:-5}
POOL=${POOL:-$((CONNS * 2))}
MIX_REFRESH=${MIX_REFRESH:-50}
MIX_LOGIN=${MIX_LOGIN:-1}
ARGON2_SECS=${ARGON2_SECS:-5}
DURABILITY=${DURABILITY:-sync}
LOG_LEVEL=${LOG_LEVEL:-info}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
KEEP_LOGS=${KEEP_LOGS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SCENARIOS=${SCENARIOS:-"user ceiling refresh mixed argon2 signup login storm"}
SCRIPT=all.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

require_tools wrk curl python3
for n in "$CONNS" "$LOGIN_CONNS" "$SIGNUP_CONNS" "$STORM_CONNS"; do
    [ "$n" -ge "$THREADS" ] || { echo "all.sh: every *CONNS must be >= THREADS ($THREADS)" >&2; exit 1; }
done
[ "$MIX_LOGIN" -ge 0 ] && [ "$MIX_REFRESH" -ge 0 ] && [ $((MIX_LOGIN + MIX_REFRESH)) -le 1000 ] ||
    { echo "all.sh: MIX_LOGIN + MIX_REFRESH must be between 0 and 1000 (per mille)" >&2; exit 1; }

build_binaries

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-all.XXXXXX")
RESULTS="$WORK/results"
: >"$RESULTS"
PID=""
NAME=""
BASE=""
ACCESS_TOKEN=""
CLK_TCK=$(getconf CLK_TCK)

stop_server() { # SIGTERM (graceful), SIGKILL after 10 s
    [ -n "$PID" ] || return 0
    if kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$PID" 2>/dev/null && kill -KILL "$PID" 2>/dev/null || true
    fi
    wait "$PID" 2>/dev/null || true
    PID=""
}

cleanup() {
    local rc=$?
    stop_server
    jobs -p | xargs -r kill 2>/dev/null || true
    if [ "$KEEP_LOGS" = 1 ] || [ "$rc" != 0 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check_server() {
    if ! kill -0 "$PID" 2>/dev/null; then
        local rc=0
        wait "$PID" || rc=$?
        PID=""
        echo "all.sh: the server ($NAME) is gone, exit status $rc; end of its log:" >&2
        tail -n 20 "$WORK/server-$NAME.log" >&2
        exit 1
    fi
}

wait_health() { # wait_health <url>
    for _ in $(seq 1 300); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        check_server
        sleep 0.1
    done
    echo "all.sh: $NAME did not answer $1 within 30 s" >&2
    exit 1
}

start_ferrotrue() { # start_ferrotrue <scenario>: a fresh server with its own data directory
    NAME=$1
    local port data="$WORK/data-$1"
    port=$(free_port)
    mkdir -p "$data"
    BASE="http://127.0.0.1:$port"
    env PORT="$port" GOTRUE_API_HOST=127.0.0.1 \
        FERROTRUE_DATA_DIR="$data" FERROTRUE_DURABILITY="$DURABILITY" \
        GOTRUE_JWT_SECRET="$JWT_SECRET" GOTRUE_MAILER_AUTOCONFIRM=true \
        GOTRUE_LOG_LEVEL="$LOG_LEVEL" "${RAISED_LIMITS[@]}" \
        "$BIN" >"$WORK/server-$NAME.log" 2>&1 &
    PID=$!
    wait_health "$BASE/health"
}

start_ceiling() {
    NAME=ceiling
    local port
    port=$(free_port)
    BASE="http://127.0.0.1:$port"
    GOTRUE_JWT_SECRET="$JWT_SECRET" "$CEILING_BIN" serve "127.0.0.1:$port" >"$WORK/server-ceiling.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/user" 2>/dev/null)" = 401 ] && return 0
        check_server
        sleep 0.1
    done
    echo "all.sh: the ceiling server did not answer within 30 s" >&2
    exit 1
}

cpu_ticks() { sed 's/.*) //' "/proc/$PID/stat" | awk '{ print $12 + $13 }'; }
mem_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }

# The login user (autoconfirm: signup returns a session); its access token serves GET /user and the
# ceiling (same secret, valid for the server's default hour).
create_login_user() {
    local body
    body=$(curl -fsS -X POST "$BASE/signup" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}")
    ACCESS_TOKEN=$(printf '%s' "$body" | json_field access_token)
}

# Records one line per wrk run in $RESULTS:
#   <scenario> <conns> <req/s> <p50> <p99> <requests> <non-2xx> <sock err> <note> <cpu ticks> <rss kB> <hwm kB> <secs>
wrk_run() { # wrk_run <label> <threads> <conns> <secs> <script> <path> [-- args] ; sets LAST
    local label=$1 t=$2 c=$3 d=$4 script=$5 path=$6
    shift 6
    local out="$WORK/wrk-$label.txt"
    echo "-- $label: wrk -t$t -c$c -d${d}s -s bench/$script $BASE$path $*"
    BENCH_NAME="$label" wrk -t"$t" -c"$c" -d"${d}s" --timeout "$WRK_TIMEOUT" -s "$BENCH_DIR/$script" "$BASE$path" "$@" \
        >"$out" 2>&1 || { echo "all.sh: wrk failed for $label:" >&2; cat "$out" >&2; exit 1; }
    LAST=$(grep '^RESULT ' "$out" || true)
    [ -n "$LAST" ] || { echo "all.sh: no result from wrk for $label:" >&2; cat "$out" >&2; exit 1; }
}

record() { # record <label> <conns> <result line> <cpu ticks> <secs>
    check_server
    local label=$1 conns=$2 line=$3 ticks=$4 secs=$5
    # RESULT <name> <req/s> <p50> <p99> <requests> <non-2xx> <sock err> <note>
    set -- $line
    echo "$label $conns $3 $4 $5 $6 $7 $8 $9 $ticks $(mem_kb VmRSS) $(mem_kb VmHWM) $secs" | tee -a "$RESULTS"
}

measured_wrk() { # measured_wrk <label> <conns> <script> <path> [-- args]: CPU delta around one wrk run
    local label=$1 conns=$2 script=$3 path=$4 before after
    shift 4
    check_server
    before=$(cpu_ticks)
    wrk_run "$label" "$THREADS" "$conns" "$DURATION" "$script" "$path" "$@"
    after=$(cpu_ticks)
    record "$label" "$conns" "$LAST" $((after - before)) "$DURATION"
}

need_token() { # a ferrotrue access token for the ceiling when `user` did not run first
    [ -n "$ACCESS_TOKEN" ] && return 0
    start_ferrotrue token
    create_login_user
    stop_server
}

echo "== binary $BIN ($(stat -c %s "$BIN") bytes)"
STRIPPED=""
if command -v strip >/dev/null 2>&1 && strip -o "$WORK/stripped" "$BIN" 2>/dev/null; then
    STRIPPED=$(stat -c %s "$WORK/stripped")
    rm -f "$WORK/stripped"
fi
echo "== ceiling $CEILING_BIN; work dir $WORK"
IDLE_RSS=""
ARGON2=""
for scenario in $SCENARIOS; do
    echo "== $scenario"
    case $scenario in
    user)
        start_ferrotrue user
        sleep 1
        [ -n "$IDLE_RSS" ] || IDLE_RSS="$(mem_kb VmRSS) $(mem_kb VmHWM)"
        create_login_user
        ACCESS_TOKEN="$ACCESS_TOKEN" measured_wrk user "$CONNS" user.lua /
        stop_server
        ;;
    ceiling)
        need_token
        start_ceiling
        ACCESS_TOKEN="$ACCESS_TOKEN" measured_wrk ceiling "$CONNS" user.lua /
        stop_server
        ;;
    refresh)
        start_ferrotrue refresh
        create_login_user
        create_refresh_pool "$BASE" "$WORK/tokens-refresh.txt"
        measured_wrk refresh "$CONNS" refresh.lua / -- "$WORK/tokens-refresh.txt" "$THREADS"
        stop_server
        ;;
    mixed)
        start_ferrotrue mixed
        create_login_user
        create_refresh_pool "$BASE" "$WORK/tokens-mixed.txt"
        ACCESS_TOKEN="$ACCESS_TOKEN" EMAIL="$EMAIL" PASSWORD="$PASSWORD" MIX_LOGIN="$MIX_LOGIN" \
            MIX_REFRESH="$MIX_REFRESH" measured_wrk mixed "$CONNS" mixed.lua / -- "$WORK/tokens-mixed.txt" "$THREADS"
        stop_server
        ;;
    argon2)
        echo "-- argon2: $CEILING_BIN argon2 $(nproc) $ARGON2_SECS"
        # Its CPU time too (bash's `time`): CPU per hash is robust to a busy machine, hashes/s is not.
        TIMEFORMAT='%U %S'
        { time "$CEILING_BIN" argon2 "$(nproc)" "$ARGON2_SECS" >"$WORK/argon2.out"; } 2>"$WORK/argon2.time"
        ARGON2="$(cat "$WORK/argon2.out") cpu=$(awk '{ print $1 + $2 }' "$WORK/argon2.time")"
        echo "$ARGON2"
        ;;
    signup)
        start_ferrotrue signup
        RUN_ID="all$$" PASSWORD="$PASSWORD" measured_wrk signup "$SIGNUP_CONNS" signup.lua /
        stop_server
        ;;
    login)
        start_ferrotrue login
        create_login_user
        EMAIL="$EMAIL" PASSWORD="$PASSWORD" measured_wrk login "$LOGIN_CONNS" password.lua /
        stop_server
        ;;
    storm)
        start_ferrotrue storm
        create_login_user
        # The probe alone first (same server, same settings), then during the storm.
        before=$(cpu_ticks)
        ACCESS_TOKEN="$ACCESS_TOKEN" wrk_run probe-alone 1 "$PROBE_CONNS" "$PROBE_ALONE" user.lua /
        after=$(cpu_ticks)
        record probe-alone "$PROBE_CONNS" "$LAST" $((after - before)) "$PROBE_ALONE"
        before=$(cpu_ticks)
        EMAIL="$EMAIL" PASSWORD="$PASSWORD" BENCH_NAME=storm-logins wrk -t"$THREADS" -c"$STORM_CONNS" \
            -d"$((DURATION + 2))s" --timeout "$WRK_TIMEOUT" -s "$BENCH_DIR/password.lua" "$BASE/" \
            >"$WORK/wrk-storm-logins.txt" 2>&1 &
        storm_pid=$!
        echo "-- storm-logins: wrk -t$THREADS -c$STORM_CONNS -d$((DURATION + 2))s -s bench/password.lua $BASE/ (background)"
        sleep 1
        ACCESS_TOKEN="$ACCESS_TOKEN" wrk_run storm-user 1 "$PROBE_CONNS" "$DURATION" user.lua /
        probe=$LAST
        wait "$storm_pid" || { echo "all.sh: storm wrk failed:" >&2; cat "$WORK/wrk-storm-logins.txt" >&2; exit 1; }
        after=$(cpu_ticks)
        logins=$(grep '^RESULT ' "$WORK/wrk-storm-logins.txt") ||
            { echo "all.sh: no result from the storm wrk:" >&2; cat "$WORK/wrk-storm-logins.txt" >&2; exit 1; }
        # The CPU of the whole storm window goes on the logins row (argon2 is nearly all of it);
        # the probe row gets "-".
        record storm-user "$PROBE_CONNS" "$probe" - "$DURATION"
        record storm-logins "$STORM_CONNS" "$logins" $((after - before)) "$((DURATION + 2))"
        stop_server
        ;;
    *) echo "all.sh: unknown scenario '$scenario'" >&2; exit 1 ;;
    esac
done

echo
echo "== summary"
python3 - "$RESULTS" "$BIN" "$CLK_TCK" "${IDLE_RSS:-}" "${ARGON2:-}" "$DURATION" "$THREADS" "$DURABILITY" \
    "$LOG_LEVEL" "$MIX_REFRESH" "$MIX_LOGIN" "$STRIPPED" <<'PY'
import os, platform, subprocess, sys
res, binp, tck, idle, argon, dur, thr, durab, loglvl, mix_r, mix_l, stripped = sys.argv[1:13]
tck = int(tck)
rows = {}
order = []
for l in open(res):
    p = l.split()
    if len(p) != 13:
        continue
    label, conns, rps, p50, p99, n, non2xx, sockerr, note, ticks, rss, hwm, secs = p
    rps, n, non2xx, secs = float(rps), int(n), int(non2xx), float(secs)
    ok = rps * (n - non2xx) / n if n else 0.0
    cpu = "-" if ticks == "-" or n == 0 else f"{int(ticks) * 1e6 / tck / n:.1f}"
    rows[label] = dict(conns=conns, rps=rps, ok=ok, p50=p50, p99=p99, n=n, non2xx=non2xx, sockerr=sockerr,
                       note=note, cpu=cpu, rss=int(rss) / 1024, hwm=int(hwm) / 1024)
    order.append(label)

def model():
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
mem = "?"
try:
    for l in open("/proc/meminfo"):
        if l.startswith("MemTotal:"):
            mem = f"{int(l.split()[1]) / 1048576:.1f} GiB"
except OSError:
    pass
size = os.path.getsize(binp)
try:
    version = subprocess.run([binp, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
except Exception:
    version = "?"
print(f"machine: {os.cpu_count()} CPUs ({model()}), {mem} RAM, kernel {platform.release()}; "
      f"load average at the end {os.getloadavg()[0]:.1f}")
stripped = f", {int(stripped):,} bytes stripped" if stripped and int(stripped) != size else ""
print(f"binary: {binp} ({version}), {size:,} bytes = {size / 1048576:.1f} MiB{stripped}")
print(f"wrk -t{thr} (probe: -t1), {dur} s per run; FERROTRUE_DURABILITY={durab}, GOTRUE_LOG_LEVEL={loglvl}; "
      f"mixed = {1000 - int(mix_r) - int(mix_l)}/{mix_r}/{mix_l} per mille GET /user/refresh/login")
if idle:
    r, h = idle.split()
    print(f"idle fresh server (1 s after /health): VmRSS {int(r) / 1024:.1f} MB, VmHWM {int(h) / 1024:.1f} MB")
ceiling = rows.get("ceiling", {}).get("rps")
hash_cpu_us = None
if argon.startswith("ARGON2 "):
    kv = dict(x.split("=", 1) for x in argon.split()[2:] if "=" in x)
    if "cpu" in kv and int(kv.get("hashes", 0)) > 0:
        hash_cpu_us = float(kv["cpu"]) * 1e6 / int(kv["hashes"])
argon = float(argon.split()[1]) if argon.startswith("ARGON2 ") else None
if argon:
    print(f"argon2id ceiling: {argon:.1f} hashes/s on {os.cpu_count()} threads (m=19 MiB t=2 p=1, one block reused per thread)"
          + (f", {hash_cpu_us / 1000:.1f} ms CPU per hash" if hash_cpu_us else ""))
if ceiling:
    print(f"hyper + HS256 ceiling: {ceiling:,.0f} req/s")
print()
against = {"user": ("ceiling", ceiling), "refresh": ("ceiling", ceiling), "mixed": ("ceiling", ceiling),
           "signup": ("argon2", argon), "login": ("argon2", argon), "storm-logins": ("argon2", argon)}
hdr = ("scenario", "conns", "req/s", "ok/s", "ratio", "p50 ms", "p99 ms", "non-2xx", "CPU µs/req", "RSS MB", "HWM MB", "note")
table = []
for label in order:
    r = rows[label]
    ref = against.get(label)
    ratio = "-"
    if ref and ref[1]:
        ratio = f"{r['ok'] / ref[1]:.2f} of {ref[0]}"
    note = r["note"] if r["note"] != "-" else ""
    if r["sockerr"] != "0":
        note = (note + " " if note else "") + f"sockerr={r['sockerr']}"
    if label == "storm-user" and "probe-alone" in rows:
        a = float(rows["probe-alone"]["p99"])
        if a > 0:
            note = (note + " " if note else "") + f"p99 x{float(r['p99']) / a:.1f} vs alone"
    ccpu = rows.get("ceiling", {}).get("cpu", "-")
    if label in ("user", "refresh", "mixed") and ccpu != "-" and r["cpu"] != "-" and float(ccpu) > 0:
        note = (note + " " if note else "") + f"CPU/req = {float(r['cpu']) / float(ccpu):.1f}x ceiling's"
    if label in ("signup", "login", "storm-logins") and hash_cpu_us and r["cpu"] != "-" and r["ok"] > 0:
        per_ok = float(r["cpu"]) * r["n"] / (r["n"] * r["ok"] / r["rps"])
        note = (note + " " if note else "") + f"CPU/2xx = {per_ok / hash_cpu_us:.2f} raw hashes"
    if label == "storm-logins":
        note = (note + " " if note else "") + "CPU: whole storm window"
    table.append((label, r["conns"], f"{r['rps']:,.1f}", f"{r['ok']:,.1f}", ratio, r["p50"], r["p99"],
                  r["non2xx"], r["cpu"], f"{r['rss']:.1f}", f"{r['hwm']:.1f}", note or "-"))
w = [max(len(str(x[i])) for x in table + [hdr]) for i in range(len(hdr))]
left = (0, 4, 11)
fmt = lambda x: "| " + " | ".join(str(v).ljust(w[i]) if i in left else str(v).rjust(w[i]) for i, v in enumerate(x)) + " |"
print(fmt(hdr))
print("|" + "|".join("-" * (n + 2) for n in w) + "|")
for t in table:
    print(fmt(t))
print()
print("ratio = ok/s (2xx) / ceiling: GET /user, refresh, mixed vs the hyper + HS256 server; signup, login vs the")
print("argon2id rate (one hash per request). CPU = server utime+stime over the run / requests answered (incl. 429s).")
print("On a busy machine prefer the CPU ratios in the notes (server CPU per request vs the ceiling's, or per 2xx")
print("login/signup vs the CPU of one raw hash): they do not depend on how much of the CPU the run got.")
print("RSS/HWM = the server's VmRSS/VmHWM right after its run; each scenario has a fresh server and data directory.")
PY
