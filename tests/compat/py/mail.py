"""Helpers for the email-flow tests: the second ferrotrue instance (autoconfirm off, real
SMTP) and the Maildir the aiosmtpd sink writes to.

tests/compat/run.sh sets FERROTRUE_EMAIL_URL (the email-flow server, whose
API_EXTERNAL_URL is that same URL) and FERROTRUE_MAILDIR.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import html
import json
import os
import re
import time
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from helpers import API_VERSION, JWT_SECRET

EMAIL_URL = os.environ.get("FERROTRUE_EMAIL_URL", "").rstrip("/")
MAILDIR = os.environ.get("FERROTRUE_MAILDIR", "")
if not EMAIL_URL or not MAILDIR:
    raise RuntimeError(
        "FERROTRUE_EMAIL_URL / FERROTRUE_MAILDIR are not set (run the suite through tests/compat/run.sh)"
    )

SITE_URL = "http://localhost:3000"  # GOTRUE_SITE_URL of the email-flow server

SUBJECT_CONFIRMATION = "Confirm Your Email"
SUBJECT_MAGIC_LINK = "Your Magic Link"
SUBJECT_RECOVERY = "Reset Your Password"
SUBJECT_INVITE = "You have been invited"
SUBJECT_EMAIL_CHANGE = "Confirm Email Change"
SUBJECT_REAUTHENTICATION = "Confirm reauthentication"

EMAIL_CHANGE_ACCEPTED = (
    "Confirmation link accepted. Please proceed to confirm link sent to the other email"
)

_HREF = re.compile(r"""href\s*=\s*(?:"([^"]+)"|'([^']+)')""", re.I)
_CODE = re.compile(r"code[^0-9<]{0,40}?\b(\d{6,10})\b", re.I)
_NAME = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)")


@dataclass
class Mail:
    file: str
    order: tuple
    subject: str
    sender: str
    recipients: list[str]
    html: str
    link: str | None
    code: str | None


def _parse(path: Path) -> Mail:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = msg.get_body(preferencelist=("html", "plain"))
    assert part is not None, f"{path.name}: no text body"
    body = part.get_content()
    recipients = [
        a.lower() for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("X-RcptTo", []))
    ]
    href = _HREF.search(body)
    code = _CODE.search(body)
    m = _NAME.match(path.name)
    order = (int(m[1]) * 1_000_000 + int(m[2]), int(m[3])) if m else (path.stat().st_mtime_ns // 1000, 0)
    return Mail(
        file=f"{path.parent.name}/{path.name}",
        order=order,
        subject=str(msg.get("Subject", "")),
        sender=str(msg.get("From", "")),
        recipients=recipients,
        html=body,
        link=html.unescape(href[1] or href[2]) if href else None,
        code=code[1] if code else None,
    )


_cache: dict[str, Mail] = {}


def mails_to(address: str, subject: str | None = None) -> list[Mail]:
    """All stored messages addressed to `address`, oldest first (optionally one subject)."""
    address = address.lower()
    out = []
    for sub in ("new", "cur"):
        d = Path(MAILDIR) / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            key = f"{sub}/{p.name}"
            if key not in _cache:
                _cache[key] = _parse(p)
            m = _cache[key]
            if address in m.recipients and (subject is None or m.subject == subject):
                out.append(m)
    out.sort(key=lambda m: m.order)
    return out


def wait_for_mail(address: str, subject: str | None = None, *, after: int = 0, timeout: float = 5.0) -> Mail:
    """Waits until more than `after` messages (of `subject`) went to `address`; returns the newest."""
    deadline = time.monotonic() + timeout
    while True:
        mails = mails_to(address, subject)
        if len(mails) > after:
            return mails[-1]
        if time.monotonic() > deadline:
            got = [m.subject for m in mails_to(address)]
            raise AssertionError(
                f"no {subject!r} mail #{after + 1} to {address} within {timeout} s (mails: {got})"
            )
        time.sleep(0.05)


def assert_no_mail(address: str, *, count: int = 0, wait: float = 0.5) -> None:
    time.sleep(wait)
    got = [m.subject for m in mails_to(address)]
    assert len(got) == count, f"unexpected mail to {address}: {got}"


@dataclass
class LinkInfo:
    token: str
    type: str
    redirect_to: str | None
    code: str


def assert_auth_mail(mail: Mail, subject: str, vtype: str, redirect_to: str = SITE_URL) -> LinkInfo:
    """Subject, From, a verify link on API_EXTERNAL_URL of type `vtype`, and a 6-digit code."""
    assert mail.subject == subject, f"subject {mail.subject!r}"
    assert "auth@example.com" in mail.sender, f"From: {mail.sender}"
    assert mail.code and re.fullmatch(r"\d{6}", mail.code), f"no 6-digit code: {mail.html}"
    assert f"Or enter this code: {mail.code}" in mail.html
    assert mail.link, f"no href in: {mail.html}"
    assert mail.link.startswith(f"{EMAIL_URL}/verify?"), f"link not on API_EXTERNAL_URL: {mail.link}"
    q = parse_qs(urlsplit(mail.link).query, keep_blank_values=True)
    token = q.get("token", [""])[0]
    assert re.fullmatch(r"(pkce_)?[0-9a-f]{56}", token), f"token: {mail.link}"
    assert q.get("type") == [vtype], f"type: {mail.link}"
    got_redirect = q.get("redirect_to", [None])[0]
    assert got_redirect == redirect_to, f"redirect_to: {mail.link}"
    return LinkInfo(token=token, type=vtype, redirect_to=got_redirect, code=mail.code)


@dataclass
class Redirect:
    status: int
    location: str
    base: str
    query: dict[str, str]
    fragment: dict[str, str]
    text: str


def _flat(qs: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(qs, keep_blank_values=True).items()}


def get_no_follow(url: str) -> Redirect:
    """GET a link without following the redirect; splits the Location."""
    with httpx.Client(follow_redirects=False, timeout=10) as c:
        r = c.get(url)
    loc = r.headers.get("location", "")
    before, _, frag = loc.partition("#")
    base, _, query = before.partition("?")
    return Redirect(r.status_code, loc, base, _flat(query), _flat(frag), r.text)


def raw_email(method: str, path: str, body=None, jwt: str | None = None) -> httpx.Response:
    headers = {"X-Supabase-Api-Version": API_VERSION}
    if jwt:
        headers["Authorization"] = f"Bearer {jwt}"
    with httpx.Client(timeout=10) as c:
        return c.request(method, EMAIL_URL + path, json=body, headers=headers)


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def service_role_jwt() -> str:
    """An HS256 service_role JWT as Supabase issues them."""
    assert JWT_SECRET, "FERROTRUE_JWT_SECRET not set"
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(
        json.dumps({"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 3600}).encode()
    )
    sig = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"
