"""A send-SMS hook receiver for the compat suite (stdlib only).

usage: sms_hook.py <port> <secret> <log-file>

Listens on 127.0.0.1:<port>. Each POST must carry a valid Standard Webhooks signature
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(id.ts.body)>`,
possibly several space-separated) made with <secret> (`v1,whsec_<base64>` or bare base64);
bad or missing signatures, stale timestamps and non-JSON bodies get 401/400. Each verified
payload (`{"user": {...}, "sms": {"otp", "phone"}}`) is appended to <log-file> as one JSON
line, flushed and fsynced, before the 200 `{}` answer, so a test that saw the server's reply
finds the code in the file. GET answers 200 (readiness probe).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 5 * 60  # Standard Webhooks' default timestamp tolerance


def decode_secret(raw: str) -> bytes:
    s = raw.strip()
    if s.startswith("v1,"):
        s = s[3:]
    if s.startswith("whsec_"):
        s = s[6:]
    return base64.b64decode(s, validate=True)


def main() -> None:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port, secret, log_path = int(sys.argv[1]), decode_secret(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    log = open(log_path, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, status: int, message: str) -> None:
            self.log_message("refused (%d): %s", status, message)
            self._answer(status, {"error": {"http_code": status, "message": message}})

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self._answer(200, {})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            msg_id = self.headers.get("webhook-id") or ""
            ts = self.headers.get("webhook-timestamp") or ""
            sigs = (self.headers.get("webhook-signature") or "").split()
            if not msg_id or not ts or not sigs:
                return self._refuse(401, "missing webhook-id, webhook-timestamp or webhook-signature")
            try:
                ts_int = int(ts)
            except ValueError:
                return self._refuse(401, f"bad webhook-timestamp {ts!r}")
            if abs(time.time() - ts_int) > TOLERANCE_S:
                return self._refuse(401, f"webhook-timestamp {ts} outside the tolerance")
            mac = hmac.new(secret, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
            expected = "v1," + base64.b64encode(mac).decode()
            if not any(hmac.compare_digest(expected, s) for s in sigs):
                return self._refuse(401, "no webhook-signature matches")
            try:
                payload = json.loads(body)
            except ValueError:
                return self._refuse(400, "body is not JSON")
            if not isinstance(payload, dict):
                return self._refuse(400, "body is not a JSON object")
            line = json.dumps(payload, separators=(",", ":")) + "\n"
            with lock:
                log.write(line)
                log.flush()
                os.fsync(log.fileno())
            self._answer(200, {})

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write(f"sms_hook: {self.command} {self.path}: {fmt % args}\n")
            sys.stderr.flush()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"sms_hook: listening on 127.0.0.1:{port}, logging to {log_path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.close()


if __name__ == "__main__":
    main()
