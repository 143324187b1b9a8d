"""Email flows (autoconfirm off, real SMTP): sign-up confirmation by code and link, resend,
wrong codes."""

from __future__ import annotations

import json

import pytest
from supabase_auth.errors import AuthApiError

from helpers import STORAGE_KEY, assert_session, decode_and_verify_jwt, random_email, random_password
from mail import (
    SITE_URL,
    SUBJECT_CONFIRMATION,
    assert_auth_mail,
    assert_no_mail,
    get_no_follow,
    wait_for_mail,
)


def assert_otp_expired(exc: pytest.ExceptionInfo) -> None:
    assert isinstance(exc.value, AuthApiError), repr(exc.value)
    assert exc.value.status == 403, exc.value.message
    assert exc.value.code == "otp_expired", exc.value.message


def test_sign_up_without_autoconfirm_then_verify_code(make_email_client):
    client = make_email_client()
    email, password = random_email(), random_password()

    res = client.sign_up({"email": email, "password": password})
    assert res.session is None, "no session before the email is confirmed"
    assert res.user is not None and res.user.email == email
    assert res.user.email_confirmed_at is None
    assert res.user.confirmation_sent_at is not None
    assert client.get_session() is None
    assert client._storage.get_item(STORAGE_KEY) is None

    mail = wait_for_mail(email, SUBJECT_CONFIRMATION)
    info = assert_auth_mail(mail, SUBJECT_CONFIRMATION, "signup")
    assert not info.token.startswith("pkce_")

    with pytest.raises(AuthApiError) as early:
        make_email_client().sign_in_with_password({"email": email, "password": password})
    assert early.value.code == "email_not_confirmed"
    assert early.value.status == 400

    verified = client.verify_otp({"email": email, "token": info.code, "type": "signup"})
    assert_session(verified.session, "verify_otp(signup)")
    assert verified.user.id == res.user.id
    assert verified.user.email_confirmed_at is not None
    assert [e for e, _ in client.events if e == "SIGNED_IN"], client.events
    stored = json.loads(client._storage.get_item(STORAGE_KEY))
    assert stored["access_token"] == verified.session.access_token
    payload = decode_and_verify_jwt(verified.session.access_token)
    assert any(x.get("method") == "otp" for x in payload["amr"]), payload["amr"]

    with pytest.raises(AuthApiError) as reuse:
        make_email_client().verify_otp({"email": email, "token": info.code, "type": "signup"})
    assert_otp_expired(reuse)

    signin = make_email_client().sign_in_with_password({"email": email, "password": password})
    assert signin.user.id == res.user.id


def test_confirmation_link_redirects_with_tokens_in_fragment(make_email_client):
    client = make_email_client()
    email = random_email()
    res = client.sign_up({"email": email, "password": random_password()})
    mail = wait_for_mail(email, SUBJECT_CONFIRMATION)
    assert_auth_mail(mail, SUBJECT_CONFIRMATION, "signup")

    r = get_no_follow(mail.link)
    assert r.status == 303, f"{r.status} {r.text}"
    assert r.base == SITE_URL, r.location
    assert r.query == {}, r.location
    for k in ("access_token", "refresh_token", "expires_in", "expires_at"):
        assert r.fragment.get(k), f"fragment lacks {k}: {r.location}"
    assert r.fragment["token_type"] == "bearer"
    assert r.fragment["type"] == "signup"
    assert r.fragment.get("sb") == "", "the empty sb marker param must be present"

    user = client.get_user(r.fragment["access_token"]).user
    assert user.id == res.user.id
    assert user.email_confirmed_at is not None
    adopted = client.set_session(r.fragment["access_token"], r.fragment["refresh_token"])
    assert adopted.user.id == res.user.id
    refreshed = client.refresh_session()
    assert refreshed.session is not None and refreshed.session.refresh_token != r.fragment["refresh_token"]

    again = get_no_follow(mail.link)
    assert again.status == 303
    assert again.base == SITE_URL
    assert again.fragment.get("error") == "access_denied", again.location
    assert again.fragment.get("error_code") == "otp_expired", again.location
    assert again.fragment.get("error_description"), again.location


def test_resend_signup_sends_a_new_code(make_email_client):
    client = make_email_client()
    email = random_email()
    client.sign_up({"email": email, "password": random_password()})
    first = wait_for_mail(email, SUBJECT_CONFIRMATION)

    out = client.resend({"type": "signup", "email": email})
    assert out.session is None and out.user is None
    second = wait_for_mail(email, SUBJECT_CONFIRMATION, after=1)
    info = assert_auth_mail(second, SUBJECT_CONFIRMATION, "signup")
    assert second.file != first.file

    if first.code != second.code:
        with pytest.raises(AuthApiError) as old:
            make_email_client().verify_otp({"email": email, "token": first.code, "type": "signup"})
        assert_otp_expired(old)
    ok = client.verify_otp({"email": email, "token": info.code, "type": "signup"})
    assert_session(ok.session)

    # Confirmed now: resend is a silent no-op.
    client.resend({"type": "signup", "email": email})
    assert_no_mail(email, count=2, wait=0.3)


def test_verify_otp_wrong_code_is_otp_expired(make_email_client):
    client = make_email_client()
    email = random_email()
    client.sign_up({"email": email, "password": random_password()})
    mail = wait_for_mail(email, SUBJECT_CONFIRMATION)
    wrong = "111111" if mail.code == "000000" else "000000"

    with pytest.raises(AuthApiError) as exc:
        client.verify_otp({"email": email, "token": wrong, "type": "signup"})
    assert_otp_expired(exc)
    assert exc.value.message == "Token has expired or is invalid"

    with pytest.raises(AuthApiError) as exc_email:
        client.verify_otp({"email": email, "token": wrong, "type": "email"})
    assert_otp_expired(exc_email)

    with pytest.raises(AuthApiError) as exc_hash:
        client.verify_otp({"token_hash": "e" * 56, "type": "signup"})
    assert_otp_expired(exc_hash)
    assert client.get_session() is None

    ok = client.verify_otp({"email": email, "token": mail.code, "type": "signup"})
    assert_session(ok.session)


def test_verify_otp_with_token_hash(make_email_client):
    client = make_email_client()
    email = random_email()
    client.sign_up({"email": email, "password": random_password()})
    info = assert_auth_mail(wait_for_mail(email, SUBJECT_CONFIRMATION), SUBJECT_CONFIRMATION, "signup")
    res = client.verify_otp({"token_hash": info.token, "type": "signup"})
    assert_session(res.session)
    assert res.user.email == email
    assert res.user.email_confirmed_at is not None
