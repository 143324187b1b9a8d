"""Email flows (autoconfirm off, real SMTP): magic link / email OTP, recovery, secure email
change, reauthentication, PKCE, admin invite."""

from __future__ import annotations

import json
import re

import pytest
from supabase_auth import SyncGoTrueAdminAPI
from supabase_auth.errors import AuthApiError

from helpers import STORAGE_KEY, assert_session, decode_and_verify_jwt, random_email, random_password
from mail import (
    EMAIL_CHANGE_ACCEPTED,
    EMAIL_URL,
    SITE_URL,
    SUBJECT_CONFIRMATION,
    SUBJECT_EMAIL_CHANGE,
    SUBJECT_INVITE,
    SUBJECT_MAGIC_LINK,
    SUBJECT_REAUTHENTICATION,
    SUBJECT_RECOVERY,
    assert_auth_mail,
    assert_no_mail,
    get_no_follow,
    raw_email,
    service_role_jwt,
    wait_for_mail,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VERIFIER_KEY = f"{STORAGE_KEY}-code-verifier"


# ---- magic link / email OTP -----------------------------------------------------------


def test_sign_in_with_otp_magic_link_email_and_magiclink_types(make_email_client, confirmed_user):
    email = confirmed_user.email
    client = make_email_client()

    out = client.sign_in_with_otp({"email": email, "options": {"should_create_user": False}})
    assert out.session is None and out.user is None
    info = assert_auth_mail(wait_for_mail(email, SUBJECT_MAGIC_LINK), SUBJECT_MAGIC_LINK, "magiclink")

    v1 = client.verify_otp({"email": email, "token": info.code, "type": "email"})
    assert_session(v1.session, "verify_otp(email)")
    assert v1.user.id == confirmed_user.user.id
    assert ("SIGNED_IN" in [e for e, _ in client.events]), client.events
    amr = decode_and_verify_jwt(v1.session.access_token)["amr"]
    assert any(x.get("method") == "otp" for x in amr), amr

    client.sign_in_with_otp({"email": email})
    info2 = assert_auth_mail(
        wait_for_mail(email, SUBJECT_MAGIC_LINK, after=1), SUBJECT_MAGIC_LINK, "magiclink"
    )
    v2 = make_email_client().verify_otp({"email": email, "token": info2.code, "type": "magiclink"})
    assert_session(v2.session, "verify_otp(magiclink)")
    assert v2.user.id == confirmed_user.user.id


def test_sign_in_with_otp_new_address_gets_confirmation(make_email_client):
    client = make_email_client()
    email = random_email()
    client.sign_in_with_otp({"email": email, "options": {"data": {"plan": "pro"}}})
    info = assert_auth_mail(wait_for_mail(email), SUBJECT_CONFIRMATION, "signup")
    res = client.verify_otp({"email": email, "token": info.code, "type": "email"})
    assert_session(res.session)
    assert res.user.email == email
    assert res.user.email_confirmed_at is not None
    assert res.user.user_metadata.get("plan") == "pro"


def test_sign_in_with_otp_no_create_unknown_is_otp_disabled(make_email_client):
    email = random_email()
    with pytest.raises(AuthApiError) as exc:
        make_email_client().sign_in_with_otp(
            {"email": email, "options": {"should_create_user": False}}
        )
    assert exc.value.code == "otp_disabled"
    assert exc.value.status == 422
    assert_no_mail(email, wait=0.2)


# ---- recovery ---------------------------------------------------------------------------


def test_recovery_verify_otp_emits_password_recovery_then_update_password(
    make_email_client, confirmed_user
):
    email, password = confirmed_user.email, confirmed_user.password
    client = make_email_client()

    assert client.reset_password_for_email(email, {"redirect_to": "http://localhost:3000/reset"}) is None
    info = assert_auth_mail(
        wait_for_mail(email, SUBJECT_RECOVERY),
        SUBJECT_RECOVERY,
        "recovery",
        redirect_to="http://localhost:3000/reset",
    )

    res = client.verify_otp({"email": email, "token": info.code, "type": "recovery"})
    assert_session(res.session, "verify_otp(recovery)")
    assert res.user.id == confirmed_user.user.id
    events = [e for e, _ in client.events]
    assert events.count("PASSWORD_RECOVERY") == 1, events

    new_password = random_password()
    upd = client.update_user({"password": new_password})
    assert upd.user.id == confirmed_user.user.id

    ok = make_email_client().sign_in_with_password({"email": email, "password": new_password})
    assert ok.user.id == confirmed_user.user.id
    with pytest.raises(AuthApiError) as old:
        make_email_client().sign_in_with_password({"email": email, "password": password})
    assert old.value.code == "invalid_credentials"


def test_reset_password_unknown_address_no_error_no_mail(make_email_client):
    email = random_email()
    assert make_email_client().reset_password_for_email(email) is None
    assert_no_mail(email)


# ---- secure email change ----------------------------------------------------------------


def test_secure_email_change_new_address_first(make_email_client, confirmed_user):
    """Both confirmations needed; here the code sent to the NEW address is entered first."""
    client = confirmed_user.client
    old_email, new_email = confirmed_user.email, random_email()

    upd = client.update_user({"email": new_email})
    assert upd.user.email == old_email
    assert upd.user.new_email == new_email
    assert upd.user.email_change_sent_at is not None

    to_old = assert_auth_mail(wait_for_mail(old_email, SUBJECT_EMAIL_CHANGE), SUBJECT_EMAIL_CHANGE, "email_change")
    to_new = assert_auth_mail(wait_for_mail(new_email, SUBJECT_EMAIL_CHANGE), SUBJECT_EMAIL_CHANGE, "email_change")
    assert to_old.token != to_new.token

    # First half: the server answers {"msg": ..., "code": "200"}; the client returns an empty
    # AuthResponse (it recognises the shape by code == "200" only).
    events_before = len(client.events)
    first = client.verify_otp({"email": new_email, "token": to_new.code, "type": "email_change"})
    assert first.session is None and first.user is None, first
    assert len(client.events) == events_before, "no auth event for the first half"
    assert client.get_user().user.email == old_email

    second = client.verify_otp({"email": old_email, "token": to_old.code, "type": "email_change"})
    assert_session(second.session, "second email_change confirmation")
    assert second.user.email == new_email
    assert not second.user.new_email
    assert client.get_user().user.email == new_email

    ok = make_email_client().sign_in_with_password({"email": new_email, "password": confirmed_user.password})
    assert ok.user.id == confirmed_user.user.id


def test_secure_email_change_first_half_raw_shape(confirmed_user):
    """The exact JSON the Python client keys on (Appendix B)."""
    client = confirmed_user.client
    old_email, new_email = confirmed_user.email, random_email()
    client.update_user({"email": new_email})
    to_old = wait_for_mail(old_email, SUBJECT_EMAIL_CHANGE)
    r = raw_email("POST", "/verify", body={"type": "email_change", "email": old_email, "token": to_old.code})
    assert r.status_code == 200, r.text
    assert r.json() == {"msg": EMAIL_CHANGE_ACCEPTED, "code": "200"}


# ---- reauthentication -------------------------------------------------------------------


def test_reauthenticate_sends_code(confirmed_user, make_email_client):
    client = confirmed_user.client
    res = client.reauthenticate()
    assert res.user is None and res.session is None
    mail = wait_for_mail(confirmed_user.email, SUBJECT_REAUTHENTICATION)
    assert "auth@example.com" in mail.sender
    assert mail.code and re.fullmatch(r"\d{6}", mail.code), mail.html

    new_password = random_password()
    client.update_user({"password": new_password, "nonce": mail.code})
    ok = make_email_client().sign_in_with_password({"email": confirmed_user.email, "password": new_password})
    assert ok.user.id == confirmed_user.user.id


# ---- PKCE --------------------------------------------------------------------------------


def _code_from_link(link: str, expected_base: str) -> str:
    r = get_no_follow(link)
    assert r.status == 303, f"{r.status} {r.text}"
    assert r.base == expected_base, r.location
    code = r.query.get("code", "")
    assert UUID.fullmatch(code), f"PKCE redirect carries ?code=<uuid>: {r.location}"
    assert "access_token" not in r.fragment, r.location
    return code


def test_pkce_recovery_exchange_code_for_session(make_email_client, confirmed_user):
    email = confirmed_user.email
    client = make_email_client(flow_type="pkce")
    client.reset_password_for_email(email, {"redirect_to": "http://localhost:3000/reset"})
    stored = client._storage.get_item(VERIFIER_KEY)
    assert stored and stored.endswith("/PASSWORD_RECOVERY"), stored

    info = assert_auth_mail(
        wait_for_mail(email, SUBJECT_RECOVERY), SUBJECT_RECOVERY, "recovery", redirect_to="http://localhost:3000/reset"
    )
    assert info.token.startswith("pkce_"), info.token
    code = _code_from_link(wait_for_mail(email, SUBJECT_RECOVERY).link, "http://localhost:3000/reset")

    res = client.exchange_code_for_session({"auth_code": code})
    assert_session(res.session, "exchange_code_for_session")
    assert res.user.id == confirmed_user.user.id
    assert client._storage.get_item(VERIFIER_KEY) is None
    assert [e for e, _ in client.events if e == "PASSWORD_RECOVERY"], client.events
    assert client.get_user().user.id == confirmed_user.user.id


def test_pkce_magic_link_exchange_code_for_session(make_email_client, confirmed_user):
    email = confirmed_user.email
    client = make_email_client(flow_type="pkce")
    client.sign_in_with_otp({"email": email, "options": {"email_redirect_to": "http://localhost:3000/welcome"}})
    verifier = client._storage.get_item(VERIFIER_KEY)
    assert verifier and len(verifier) >= 43, verifier

    mail = wait_for_mail(email, SUBJECT_MAGIC_LINK)
    info = assert_auth_mail(mail, SUBJECT_MAGIC_LINK, "magiclink", redirect_to="http://localhost:3000/welcome")
    assert info.token.startswith("pkce_"), info.token
    code = _code_from_link(mail.link, "http://localhost:3000/welcome")

    res = client.exchange_code_for_session({"auth_code": code})
    assert_session(res.session)
    assert res.user.id == confirmed_user.user.id
    assert [e for e, _ in client.events if e == "SIGNED_IN"], client.events

    # Single use.
    reuse = raw_email("POST", "/token?grant_type=pkce", body={"auth_code": code, "code_verifier": verifier})
    assert reuse.status_code == 404, reuse.text
    assert reuse.json()["code"] == "flow_state_not_found"


def test_pkce_sign_up_link_then_exchange(make_email_client):
    client = make_email_client(flow_type="pkce")
    email = random_email()
    res = client.sign_up({"email": email, "password": random_password()})
    assert res.session is None
    info = assert_auth_mail(wait_for_mail(email, SUBJECT_CONFIRMATION), SUBJECT_CONFIRMATION, "signup")
    assert info.token.startswith("pkce_")
    code = _code_from_link(wait_for_mail(email, SUBJECT_CONFIRMATION).link, SITE_URL)
    out = client.exchange_code_for_session({"auth_code": code})
    assert_session(out.session)
    assert out.user.id == res.user.id
    assert out.user.email_confirmed_at is not None


# ---- admin invite -----------------------------------------------------------------------


def test_admin_invite_then_verify_invite(make_email_client):
    admin = SyncGoTrueAdminAPI(url=EMAIL_URL, headers={"Authorization": f"Bearer {service_role_jwt()}"})
    try:
        email = random_email()
        invited = admin.invite_user_by_email(email, {"data": {"team": "blue"}})
        assert invited.user.email == email
        assert invited.user.invited_at is not None
        assert invited.user.email_confirmed_at is None

        info = assert_auth_mail(wait_for_mail(email, SUBJECT_INVITE), SUBJECT_INVITE, "invite")
        client = make_email_client()
        res = client.verify_otp({"email": email, "token": info.code, "type": "invite"})
        assert_session(res.session, "verify_otp(invite)")
        assert res.user.id == invited.user.id
        assert res.user.email_confirmed_at is not None
        assert res.user.user_metadata.get("team") == "blue"

        with pytest.raises(AuthApiError) as dup:
            admin.invite_user_by_email(email)
        assert dup.value.code == "email_exists"
        assert dup.value.status == 422
    finally:
        admin.close()


def test_client_admin_api_with_user_token_is_not_admin(confirmed_user):
    with pytest.raises(AuthApiError) as exc:
        SyncGoTrueAdminAPI(
            url=EMAIL_URL, headers={"Authorization": f"Bearer {confirmed_user.session.access_token}"}
        ).invite_user_by_email(random_email())
    assert exc.value.status == 403
    assert exc.value.code == "not_admin"
