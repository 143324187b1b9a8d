"""Helpers for the supabase-auth (Python) compat suite.

The server under test is given by FERROTRUE_URL and its HS256 secret by
FERROTRUE_JWT_SECRET; tests/compat/run.sh sets both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

URL = os.environ.get("FERROTRUE_URL", "").rstrip("/")
JWT_SECRET = os.environ.get("FERROTRUE_JWT_SECRET", "")
API_VERSION = "2024-01-01"
STORAGE_KEY = "supabase.auth.token"

if not URL:
    raise RuntimeError("FERROTRUE_URL is not set (run the suite through tests/compat/run.sh)")


def random_email() -> str:
    return f"u{secrets.token_hex(8)}@example.com"


def random_phone_digits() -> str:
    return "1555" + f"{secrets.randbelow(10_000_000):07d}"


def random_password() -> str:
    return f"Pw-{secrets.token_hex(6)}"


@dataclass
class RawResponse:
    status: int
    headers: Any  # email.message.Message (case-insensitive .get)
    text: str
    body: Any


def raw(
    method: str,
    path: str,
    *,
    body: Any = None,
    jwt: str | None = None,
    api_version: str | None = API_VERSION,
) -> RawResponse:
    """Plain HTTP call (urllib, no client library)."""
    headers = {}
    if api_version:
        headers["X-Supabase-Api-Version"] = api_version
    if jwt:
        headers["Authorization"] = f"Bearer {jwt}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json;charset=UTF-8"
    req = urllib.request.Request(URL + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, hdrs, payload = e.code, e.headers, e.read()
    text = payload.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return RawResponse(status, hdrs, text, parsed)


def raw_refresh(refresh_token: str) -> RawResponse:
    return raw(
        "POST",
        "/token?grant_type=refresh_token",
        body={"refresh_token": refresh_token},
    )


def assert_api_error(res: RawResponse, status: int, code: str) -> None:
    """A 2024-01-01 style error: status, {code, message}, version header echoed."""
    assert res.status == status, f"expected HTTP {status}, got {res.status}: {res.text}"
    assert isinstance(res.body, dict), f"error body is not a JSON object: {res.text!r}"
    assert res.body.get("code") == code, f"expected code {code}: {res.text}"
    assert isinstance(res.body.get("message"), str) and res.body["message"], res.text
    assert res.headers.get("X-Supabase-Api-Version") == API_VERSION, (
        "error response must echo X-Supabase-Api-Version"
    )


def _b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode_and_verify_jwt(token: str) -> dict:
    """Decodes an access token and checks its HS256 signature with the configured secret."""
    h, p, s = token.split(".")
    header = json.loads(_b64url(h))
    payload = json.loads(_b64url(p))
    assert header["alg"] == "HS256"
    assert JWT_SECRET, "FERROTRUE_JWT_SECRET not set"
    expected = hmac.new(JWT_SECRET.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(expected, _b64url(s)), "access token signature does not verify"
    return payload


def assert_session(session, what: str = "session") -> None:
    assert session is not None, f"{what}: no session returned"
    assert isinstance(session.access_token, str) and session.access_token.count(".") == 2
    assert isinstance(session.refresh_token, str) and len(session.refresh_token) >= 12
    assert session.token_type == "bearer"
    assert session.expires_in > 0
    assert session.expires_at is not None
    assert session.user is not None and session.user.id
