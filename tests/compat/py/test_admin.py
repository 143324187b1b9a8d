"""Admin API through supabase-auth's SyncGoTrueAdminAPI (SPEC §1.18, §1.19, §2.3, Appendix B):
create_user, list_users(page, per_page), get_user_by_id, update_user_by_id, delete_user,
generate_link, invite_user_by_email, mfa.list_factors and sign_out(jwt).

The server at FERROTRUE_URL is shared with the other suites, so listing assertions only rely
on users created here (found by walking pages).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from supabase_auth import SyncGoTrueAdminAPI
from supabase_auth.errors import AuthApiError, AuthError, AuthWeakPasswordError

from helpers import (
    JWT_SECRET,
    URL,
    assert_api_error,
    assert_session,
    random_email,
    random_password,
    random_phone_digits,
    raw,
    raw_refresh,
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict) -> str:
    """HS256 with FERROTRUE_JWT_SECRET, as Supabase's anon / service_role keys are made."""
    assert JWT_SECRET, "FERROTRUE_JWT_SECRET not set"
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def service_role_jwt() -> str:
    now = int(time.time())
    return sign_jwt({"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 3600})


@pytest.fixture
def make_admin():
    admins: list[SyncGoTrueAdminAPI] = []

    def factory(token: str | None = None) -> SyncGoTrueAdminAPI:
        headers = {"Authorization": f"Bearer {token or service_role_jwt()}"} if token != "" else {}
        admin = SyncGoTrueAdminAPI(url=URL, headers=headers)
        admins.append(admin)
        return admin

    yield factory
    for a in admins:
        a.close()


@pytest.fixture
def admin(make_admin) -> SyncGoTrueAdminAPI:
    return make_admin()


def create_confirmed(admin: SyncGoTrueAdminAPI, **extra):
    email, password = random_email(), random_password()
    res = admin.create_user({"email": email, "password": password, "email_confirm": True, **extra})
    return email, password, res.user


def api_error(fn, status: int, code: str) -> AuthError:
    """The call raises the client's error for an API answer (AuthApiError, or a subclass of
    AuthError such as AuthWeakPasswordError) with this status and code."""
    with pytest.raises(AuthError) as exc:
        fn()
    assert exc.value.status == status, f"status {exc.value.status}: {exc.value.message}"
    assert exc.value.code == code, f"code {exc.value.code}: {exc.value.message}"
    return exc.value


def test_create_user_get_and_sign_in(admin, make_client):
    email, password = random_email(), random_password()
    res = admin.create_user(
        {
            "email": email,
            "password": password,
            "email_confirm": True,
            "user_metadata": {"full_name": "Ada Admin"},
            "app_metadata": {"plan": "pro"},
        }
    )
    user = res.user
    assert user.email == email
    assert user.aud == "authenticated"
    assert user.role == "authenticated"
    assert user.email_confirmed_at is not None
    assert user.user_metadata["full_name"] == "Ada Admin"
    assert user.app_metadata["plan"] == "pro"
    assert user.app_metadata["provider"] == "email"
    assert user.app_metadata["providers"] == ["email"]
    assert [i.provider for i in user.identities] == ["email"]

    fetched = admin.get_user_by_id(user.id).user
    assert fetched.id == user.id and fetched.email == email

    session = make_client().sign_in_with_password({"email": email, "password": password}).session
    assert_session(session, "sign in as the created user")
    assert session.user.id == user.id


def test_create_user_phone_and_errors(admin):
    phone = random_phone_digits()
    user = admin.create_user({"phone": f"+{phone}", "password": random_password(), "phone_confirm": True}).user
    assert user.phone == phone
    assert user.phone_confirmed_at is not None
    assert user.app_metadata["provider"] == "phone"

    api_error(lambda: admin.create_user({"phone": phone}), 422, "phone_exists")
    email, _, _ = create_confirmed(admin)
    api_error(lambda: admin.create_user({"email": email.upper()}), 422, "email_exists")
    api_error(lambda: admin.create_user({"password": random_password()}), 400, "validation_failed")
    weak = api_error(lambda: admin.create_user({"email": random_email(), "password": "abc"}), 422, "weak_password")
    assert isinstance(weak, AuthWeakPasswordError)
    assert "length" in weak.reasons
    api_error(lambda: admin.get_user_by_id(str(uuid.uuid4())), 404, "user_not_found")


def test_list_users_pages(admin):
    mine = [create_confirmed(admin)[2].id for _ in range(6)]

    page1 = admin.list_users(page=1, per_page=2)
    assert len(page1) == 2

    # The raw headers the JS client reads (Python uses only `users`).
    res = raw("GET", "/admin/users?page=1&per_page=2", jwt=service_role_jwt())
    assert res.status == 200
    total = int(res.headers.get("X-Total-Count"))
    assert total >= len(mine)
    link = res.headers.get("Link")
    last = math.ceil(total / 2)
    assert link == (
        f'</admin/users?page=2&per_page=2>; rel="next", </admin/users?page={last}&per_page=2>; rel="last"'
    ), link
    assert res.body["aud"] == "authenticated"

    # Walk pages until everything created here was seen (concurrent suites only push later).
    seen: list[str] = []
    page = 1
    while not all(i in seen for i in mine):
        assert page <= 200, "walked 200 pages without finding the users created here"
        users = admin.list_users(page=page, per_page=2)
        assert users, f"page {page} is empty before all users were seen"
        for u in users:
            if u.id not in seen:
                seen.append(u.id)
        page += 1
    assert [i for i in seen if i in mine] == list(reversed(mine)), "newest first"

    # Defaults (empty page / per_page) and past the end.
    everyone = admin.list_users()
    assert 1 <= len(everyone) <= 50
    assert admin.list_users(page=100000, per_page=50) == []


def test_update_user_metadata_ban_and_password(admin, make_client):
    email, password, user = create_confirmed(admin, user_metadata={"a": 1, "keep": True})
    session = make_client().sign_in_with_password({"email": email, "password": password}).session

    merged = admin.update_user_by_id(user.id, {"user_metadata": {"a": None, "b": 2}, "app_metadata": {"tier": "gold"}})
    # email_confirm: True merged email_verified (GoTrue's Confirm); a: None deleted a.
    assert merged.user.user_metadata == {"keep": True, "b": 2, "email_verified": True}
    assert merged.user.app_metadata["tier"] == "gold"
    assert merged.user.app_metadata["provider"] == "email"

    banned = admin.update_user_by_id(user.id, {"ban_duration": "24h"}).user
    assert banned.banned_until is not None
    until = datetime.fromisoformat(banned.banned_until.replace("Z", "+00:00"))
    assert until > datetime.now(timezone.utc) + timedelta(hours=23)
    with pytest.raises(AuthApiError) as exc:
        make_client().sign_in_with_password({"email": email, "password": password})
    assert (exc.value.status, exc.value.code) == (400, "user_banned")
    assert_api_error(raw_refresh(session.refresh_token), 400, "user_banned")

    unbanned = admin.update_user_by_id(user.id, {"ban_duration": "none"}).user
    assert unbanned.banned_until is None
    session = make_client().sign_in_with_password({"email": email, "password": password}).session
    assert_session(session, "sign in after unban")

    api_error(lambda: admin.update_user_by_id(user.id, {"ban_duration": "forever"}), 400, "validation_failed")

    new_password = random_password()
    admin.update_user_by_id(user.id, {"password": new_password})
    assert_api_error(raw_refresh(session.refresh_token), 400, "refresh_token_not_found")
    assert_session(
        make_client().sign_in_with_password({"email": email, "password": new_password}).session, "new password"
    )


def test_delete_user_hard_and_soft(admin, make_client):
    email, password, user = create_confirmed(admin)
    session = make_client().sign_in_with_password({"email": email, "password": password}).session
    assert admin.delete_user(user.id) is None
    api_error(lambda: admin.get_user_by_id(user.id), 404, "user_not_found")
    assert_api_error(raw_refresh(session.refresh_token), 400, "refresh_token_not_found")
    assert raw("GET", "/user", jwt=session.access_token).status == 403
    api_error(lambda: admin.delete_user(user.id), 404, "user_not_found")

    email, password, user = create_confirmed(admin)
    session = make_client().sign_in_with_password({"email": email, "password": password}).session
    admin.delete_user(user.id, should_soft_delete=True)
    tomb = admin.get_user_by_id(user.id).user
    assert tomb.deleted_at is not None
    assert tomb.email != email
    with pytest.raises(AuthApiError) as exc:
        make_client().sign_in_with_password({"email": email, "password": password})
    assert (exc.value.status, exc.value.code) == (400, "invalid_credentials")
    assert_api_error(raw_refresh(session.refresh_token), 400, "refresh_token_not_found")


def _get_no_redirect(url: str):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        resp = opener.open(url, timeout=10)
        return resp.status, resp.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


def test_generate_link_signup_magiclink_recovery(admin, make_client):
    email, password = random_email(), random_password()
    redirect_to = "http://localhost:3000/welcome"
    res = admin.generate_link(
        {
            "type": "signup",
            "email": email,
            "password": password,
            "options": {"data": {"full_name": "Linked"}, "redirect_to": redirect_to},
        }
    )
    p = res.properties
    assert p.verification_type == "signup"
    assert p.redirect_to == redirect_to
    assert re.fullmatch(r"\d{6}", p.email_otp), p.email_otp
    assert re.fullmatch(r"[0-9a-f]{56}", p.hashed_token), p.hashed_token
    assert p.action_link.startswith(f"{URL}/verify?") and f"token={p.hashed_token}" in p.action_link
    assert res.user.email == email
    assert res.user.user_metadata["full_name"] == "Linked"
    assert res.user.email_confirmed_at is None

    status, location = _get_no_redirect(p.action_link)
    assert status == 303, status
    assert location.startswith(f"{redirect_to}#access_token="), location
    assert_session(make_client().sign_in_with_password({"email": email, "password": password}).session, "after link")

    # email_otp through verify_otp.
    otp_email = random_email()
    otp_link = admin.generate_link({"type": "signup", "email": otp_email, "password": random_password()})
    verified = make_client().verify_otp({"email": otp_email, "token": otp_link.properties.email_otp, "type": "signup"})
    assert_session(verified.session, "verify_otp with email_otp")
    assert verified.user.id == otp_link.user.id

    # Magic link for an existing user; hashed_token through verify_otp.
    existing_email, _, existing = create_confirmed(admin)
    magic = admin.generate_link({"type": "magiclink", "email": existing_email})
    assert magic.properties.verification_type == "magiclink"
    assert magic.user.id == existing.id
    by_hash = make_client().verify_otp({"token_hash": magic.properties.hashed_token, "type": "magiclink"})
    assert by_hash.user.id == existing.id

    # Unknown address: magiclink becomes signup; recovery is 404.
    assert admin.generate_link({"type": "magiclink", "email": random_email()}).properties.verification_type == "signup"
    api_error(lambda: admin.generate_link({"type": "recovery", "email": random_email()}), 404, "user_not_found")
    rec = admin.generate_link({"type": "recovery", "email": existing_email})
    assert rec.properties.verification_type == "recovery"
    recovered = make_client().verify_otp(
        {"email": existing_email, "token": rec.properties.email_otp, "type": "recovery"}
    )
    assert recovered.user.id == existing.id

    api_error(
        lambda: admin.generate_link({"type": "signup", "email": existing_email, "password": random_password()}),
        422,
        "email_exists",
    )


@pytest.mark.parametrize("kind", ["email_change_current", "email_change_new"])
def test_generate_link_email_change(admin, kind):
    """supabase-auth validates verification_type against its GenerateLinkType literal, which has
    email_change_current / email_change_new (GoTrue echoes the requested type)."""
    email, _, user = create_confirmed(admin)
    new_email = random_email()
    res = admin.generate_link({"type": kind, "email": email, "new_email": new_email})
    assert res.properties.verification_type == kind
    assert "type=email_change" in res.properties.action_link
    assert res.user.id == user.id
    assert res.user.new_email == new_email


def test_invite_user_by_email_without_smtp(admin):
    email = random_email()
    user = admin.invite_user_by_email(email, {"data": {"team": "blue"}}).user
    assert user.email == email
    assert user.invited_at is not None
    assert user.user_metadata["team"] == "blue"
    assert user.email_confirmed_at is None
    assert admin.get_user_by_id(user.id).user.email == email
    confirmed_email, _, _ = create_confirmed(admin)
    api_error(lambda: admin.invite_user_by_email(confirmed_email), 422, "email_exists")


def test_mfa_list_factors(admin):
    _, _, user = create_confirmed(admin)
    assert admin.mfa.list_factors({"user_id": user.id}) == []
    api_error(lambda: admin.mfa.list_factors({"user_id": str(uuid.uuid4())}), 404, "user_not_found")


def test_sign_out_with_user_jwt(admin, email_user):
    admin.sign_out(email_user.session.access_token)
    assert_api_error(raw_refresh(email_user.session.refresh_token), 400, "refresh_token_not_found")
    assert_api_error(raw("GET", "/user", jwt=email_user.session.access_token), 403, "session_not_found")


def test_admin_calls_need_an_admin_token(make_admin, email_user):
    api_error(lambda: make_admin("").list_users(), 401, "no_authorization")
    api_error(lambda: make_admin(email_user.session.access_token).list_users(), 403, "not_admin")
    api_error(
        lambda: make_admin(sign_jwt({"role": "anon", "iss": "supabase"})).create_user({"email": random_email()}),
        403,
        "not_admin",
    )
    now = int(time.time())
    expired = sign_jwt({"role": "service_role", "iat": now - 7200, "exp": now - 3600})
    api_error(lambda: make_admin(expired).list_users(), 403, "bad_jwt")
