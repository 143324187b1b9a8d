"""Phone flows against the phone-flow server (SMS autoconfirm off, codes delivered through the
send-SMS hook, e-mail autoconfirm on). The hook receiver (tests/compat/sms_hook.py) checks each
request's Standard Webhooks signature and appends the payload
{"user": {...}, "sms": {"otp", "phone"}} as one JSON line to FERROTRUE_SMS_LOG.

tests/compat/run.sh sets FERROTRUE_PHONE_URL and FERROTRUE_SMS_LOG.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from helpers import assert_session, decode_and_verify_jwt, random_email, random_password, random_phone_digits

PHONE_URL = os.environ.get("FERROTRUE_PHONE_URL", "").rstrip("/")
SMS_LOG = os.environ.get("FERROTRUE_SMS_LOG", "")
if not PHONE_URL or not SMS_LOG:
    raise RuntimeError(
        "FERROTRUE_PHONE_URL / FERROTRUE_SMS_LOG are not set (run the suite through tests/compat/run.sh)"
    )


# ---- helpers ------------------------------------------------------------------------------


def sms_to(digits: str) -> list[dict]:
    """Every hook payload so far that went to `digits`, oldest first."""
    with open(SMS_LOG, encoding="utf-8") as f:
        payloads = [json.loads(line) for line in f if line.strip()]
    return [p for p in payloads if isinstance(p, dict) and p.get("sms", {}).get("phone") == digits]


def wait_for_sms(digits: str, *, after: int = 0, timeout: float = 5.0) -> dict:
    """Waits until more than `after` SMS went to `digits`; returns the newest payload."""
    deadline = time.monotonic() + timeout
    while True:
        got = sms_to(digits)
        if len(got) > after:
            payload = got[-1]
            assert re.fullmatch(r"\d{6}", payload["sms"]["otp"]), payload
            assert isinstance(payload.get("user", {}).get("id"), str), payload
            return payload
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS #{after + 1} to {digits} within {timeout} s (got {len(got)})")
        time.sleep(0.05)


def assert_sms_count(digits: str, count: int, wait: float = 0.3) -> None:
    time.sleep(wait)
    got = sms_to(digits)
    assert len(got) == count, f"SMS to {digits}: {got}"


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.fixture
def make_phone_client() -> Iterator[Callable[[], SyncGoTrueClient]]:
    """Factory of clients for the phone-flow server; each records its auth events in `.events`."""
    clients: list[SyncGoTrueClient] = []

    def factory() -> SyncGoTrueClient:
        client = SyncGoTrueClient(url=PHONE_URL, auto_refresh_token=False, persist_session=True)
        client.events = []  # type: ignore[attr-defined]
        client.on_auth_state_change(lambda event, session: client.events.append(event))
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


@dataclass
class PhoneUser:
    digits: str
    phone: str
    password: str
    user: Any
    otp: str


@pytest.fixture
def phone_user(make_phone_client) -> PhoneUser:
    """A freshly signed-up, unconfirmed phone user and the code the hook got for it."""
    digits = random_phone_digits()
    phone, password = f"+{digits}", random_password()
    res = make_phone_client().sign_up({"phone": phone, "password": password})
    assert res.session is None, "an unconfirmed phone sign-up must not return a session"
    assert res.user is not None
    sms = wait_for_sms(digits)
    assert sms["user"]["id"] == res.user.id
    return PhoneUser(digits, phone, password, res.user, sms["sms"]["otp"])


# ---- tests --------------------------------------------------------------------------------


def test_phone_sign_up_verify_sms_then_password_sign_in(make_phone_client):
    digits = random_phone_digits()
    phone, password = f"+{digits}", random_password()
    client = make_phone_client()

    res = client.sign_up({"phone": phone, "password": password, "options": {"data": {"plan": "sms"}}})
    assert res.session is None, "no session before the phone is confirmed"
    assert res.user is not None and res.user.id
    assert res.user.phone == digits, 'phone is returned without "+"'
    assert res.user.phone_confirmed_at is None
    assert res.user.confirmation_sent_at is not None
    assert res.user.user_metadata.get("plan") == "sms"
    assert "SIGNED_IN" not in client.events

    sms = wait_for_sms(digits)
    assert sms["sms"]["phone"] == digits
    assert sms["user"]["id"] == res.user.id
    assert sms["user"]["phone"] == digits
    assert_sms_count(digits, 1, wait=0)

    with pytest.raises(AuthApiError) as exc:
        make_phone_client().sign_in_with_password({"phone": phone, "password": password})
    assert exc.value.status == 400
    assert exc.value.code == "phone_not_confirmed"

    v = client.verify_otp({"phone": phone, "token": sms["sms"]["otp"], "type": "sms"})
    assert_session(v.session, "verify_otp(sms)")
    assert v.user.id == res.user.id
    assert v.user.phone == digits
    assert v.user.phone_confirmed_at is not None
    assert "SIGNED_IN" in client.events
    claims = decode_and_verify_jwt(v.session.access_token)
    assert claims["sub"] == res.user.id
    assert claims["phone"] == digits
    assert any(x.get("method") == "otp" for x in claims["amr"]), claims["amr"]

    got = client.get_user()
    assert got is not None and got.user.phone == digits
    assert got.user.phone_confirmed_at is not None

    pw = make_phone_client().sign_in_with_password({"phone": phone, "password": password})
    assert_session(pw.session, "sign_in_with_password(phone)")
    assert pw.user.id == res.user.id
    assert pw.user.phone == digits

    with pytest.raises(AuthApiError) as exc:
        make_phone_client().sign_in_with_password({"phone": phone, "password": password + "x"})
    assert exc.value.status == 400
    assert exc.value.code == "invalid_credentials"


def test_sign_in_with_otp_phone_for_confirmed_user(make_phone_client, phone_user):
    u = phone_user
    make_phone_client().verify_otp({"phone": u.phone, "token": u.otp, "type": "sms"})

    client = make_phone_client()
    out = client.sign_in_with_otp({"phone": u.phone, "options": {"should_create_user": False}})
    assert out.session is None and out.user is None
    sms = wait_for_sms(u.digits, after=1)
    assert sms["user"]["id"] == u.user.id

    v = client.verify_otp({"phone": u.phone, "token": sms["sms"]["otp"], "type": "sms"})
    assert_session(v.session, "verify_otp(sms) for the sign-in code")
    assert v.user.id == u.user.id
    assert v.user.phone == u.digits
    assert v.user.phone_confirmed_at is not None
    stored = client.get_session()
    assert stored is not None and stored.access_token == v.session.access_token


def test_sign_in_with_otp_unknown_phone_without_create_is_otp_disabled(make_phone_client):
    digits = random_phone_digits()
    with pytest.raises(AuthApiError) as exc:
        make_phone_client().sign_in_with_otp(
            {"phone": f"+{digits}", "options": {"should_create_user": False}}
        )
    assert exc.value.status == 422
    assert exc.value.code == "otp_disabled"
    assert_sms_count(digits, 0)


def test_sign_in_with_otp_new_phone_signs_up(make_phone_client):
    digits = random_phone_digits()
    client = make_phone_client()
    client.sign_in_with_otp({"phone": f"+{digits}"})
    sms = wait_for_sms(digits)
    assert sms["user"]["phone"] == digits
    v = client.verify_otp({"phone": f"+{digits}", "token": sms["sms"]["otp"], "type": "sms"})
    assert_session(v.session)
    assert v.user.id == sms["user"]["id"]
    assert v.user.phone == digits
    assert v.user.phone_confirmed_at is not None


def test_update_user_phone_on_email_user_then_verify_phone_change(make_phone_client):
    client = make_phone_client()
    email = random_email()
    res = client.sign_up({"email": email, "password": random_password()})
    assert_session(res.session, "sign_up(email), autoconfirmed")
    user_id = res.user.id
    assert not res.user.phone

    digits = random_phone_digits()
    phone = f"+{digits}"
    upd = client.update_user({"phone": phone})
    assert upd.user.id == user_id
    assert upd.user.new_phone == digits, 'new_phone holds the pending number (without "+")'
    assert not upd.user.phone, f"phone unchanged until confirmed: {upd.user.phone!r}"
    assert upd.user.phone_confirmed_at is None

    sms = wait_for_sms(digits)
    assert sms["sms"]["phone"] == digits
    assert sms["user"]["id"] == user_id

    # The sign-up type does not accept a phone-change code.
    with pytest.raises(AuthApiError) as exc:
        make_phone_client().verify_otp({"phone": phone, "token": sms["sms"]["otp"], "type": "sms"})
    assert exc.value.status == 403
    assert exc.value.code == "otp_expired"

    v = client.verify_otp({"phone": phone, "token": sms["sms"]["otp"], "type": "phone_change"})
    assert_session(v.session, "verify_otp(phone_change)")
    assert v.user.id == user_id

    got = client.get_user()
    assert got is not None
    assert got.user.id == user_id
    assert got.user.phone == digits
    assert got.user.email == email
    assert got.user.phone_confirmed_at is not None
    assert not got.user.new_phone, f"new_phone is cleared: {got.user.new_phone!r}"
    # GoTrue adds a phone identity when a phone change is confirmed on a user without one.
    providers = {i.provider: i for i in got.user.identities or []}
    assert "phone" in providers, got.user.identities
    assert providers["phone"].identity_data.get("phone") == digits
    assert "email" in providers, "the email identity stays"


def test_wrong_code_reused_code_and_invalid_phone(make_phone_client, phone_user):
    u = phone_user
    client = make_phone_client()

    with pytest.raises(AuthApiError) as exc:
        client.verify_otp({"phone": u.phone, "token": wrong_code(u.otp), "type": "sms"})
    assert exc.value.status == 403
    assert exc.value.code == "otp_expired"

    ok = client.verify_otp({"phone": u.phone, "token": u.otp, "type": "sms"})
    assert_session(ok.session, "verify_otp with the right code after a wrong one")

    with pytest.raises(AuthApiError) as exc:
        make_phone_client().verify_otp({"phone": u.phone, "token": u.otp, "type": "sms"})
    assert exc.value.status == 403
    assert exc.value.code == "otp_expired"

    with pytest.raises(AuthApiError) as exc:
        make_phone_client().sign_in_with_otp({"phone": "12ab"})
    assert exc.value.status == 400
    assert exc.value.code == "validation_failed"


def test_resend_sms_for_unconfirmed_phone(make_phone_client, phone_user):
    u = phone_user
    client = make_phone_client()

    out = client.resend({"type": "sms", "phone": u.phone})
    assert out.session is None and out.user is None
    sms = wait_for_sms(u.digits, after=1)
    assert sms["user"]["id"] == u.user.id

    if sms["sms"]["otp"] != u.otp:
        with pytest.raises(AuthApiError) as exc:
            client.verify_otp({"phone": u.phone, "token": u.otp, "type": "sms"})
        assert exc.value.status == 403
        assert exc.value.code == "otp_expired"
    v = client.verify_otp({"phone": u.phone, "token": sms["sms"]["otp"], "type": "sms"})
    assert_session(v.session, "verify_otp with the resent code")
    assert v.user.id == u.user.id
    assert v.user.phone_confirmed_at is not None

    # Confirmed now: resend is a silent no-op.
    client.resend({"type": "sms", "phone": u.phone})
    assert_sms_count(u.digits, 2)
