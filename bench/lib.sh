# Shell pieces shared by bench/all.sh and bench/pg.sh (sourced; set ROOT and SCRIPT first).

# wrk is one client (127.0.0.1), so the per-client limits are raised (as in load.sh).
RAISED_LIMITS=(
    GOTRUE_RATE_LIMIT_OTP=1000000000 GOTRUE_RATE_LIMIT_VERIFY=1000000000
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH=1000000000 GOTRUE_RATE_LIMIT_ANONYMOUS_USERS=1000000000
    FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT=1000000000 FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT=1000000000
)
JWT_SECRET="load-bench-secret-that-is-long-enough-for-hs256"
PASSWORD="bench-password-1234"
EMAIL="login@example.com"

require_tools() { # require_tools <tool...>
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "$SCRIPT: '$tool' is required (apt-get install -y $tool)" >&2; exit 1; }
    done
}

# Builds what is not given (unless SKIP_BUILD=1), then sets BIN and CEILING_BIN. The ceiling has its own
# pinned profile (Cargo.toml [profile.ceiling]), so a change of [profile.release] moves the server's
# figures, not the yardstick.
build_binaries() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        if [ -z "${BIN:-}" ]; then
            echo "== cargo build --release --bin ferrotrue"
            (cd "$ROOT" && cargo build --release --bin ferrotrue)
        fi
        if [ -z "${CEILING_BIN:-}" ]; then
            echo "== cargo build --profile ceiling -p ferrotrue-ceiling"
            (cd "$ROOT" && cargo build --profile ceiling -p ferrotrue-ceiling)
        fi
    fi
    local target_dir=${CARGO_TARGET_DIR:-$ROOT/target} b
    BIN=${BIN:-$target_dir/release/ferrotrue}
    CEILING_BIN=${CEILING_BIN:-$target_dir/ceiling/ferrotrue-ceiling}
    for b in "$BIN" "$CEILING_BIN"; do
        [ -x "$b" ] || { echo "$SCRIPT: $b not found (build failed, or SKIP_BUILD=1 without a build)" >&2; exit 1; }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# POOL sessions of EMAIL (password grants, 4 at a time): the refresh chains of one run.
create_refresh_pool() { # create_refresh_pool <base url> <file>
    python3 - "$1" "$EMAIL" "$PASSWORD" "$POOL" "$2" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, email, password, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def login(_):
    req = urllib.request.Request(base + "/token?grant_type=password", method="POST",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["refresh_token"]
with ThreadPoolExecutor(4) as ex:
    tokens = list(ex.map(login, range(n)))
open(out, "w").write("\n".join(tokens) + "\n")
PY
}
