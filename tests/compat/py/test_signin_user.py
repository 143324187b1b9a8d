"""Flows 5-6: password sign-in (email and phone), get_user, update_user."""

from __future__ import annotations

import pytest
from supabase_auth.errors import AuthApiError

from helpers import (
    assert_session,
    decode_and_verify_jwt,
    random_email,
    random_password,
    random_phone_digits,
)


def test_sign_in_with_password_email(make_client, email_user):
    client = make_client()
    res = client.sign_in_with_password({"email": email_user.email, "password": email_user.password})
    assert_session(res.session, "sign_in_with_password")
    assert res.user.id == email_user.user.id
    assert res.user.email == email_user.email
    assert res.user.last_sign_in_at is not None
    assert res.session.refresh_token != email_user.session.refresh_token

    a = decode_and_verify_jwt(email_user.session.access_token)
    b = decode_and_verify_jwt(res.session.access_token)
    assert a["session_id"] != b["session_id"], "a sign-in must create a new session"
    assert any(x.get("method") == "password" for x in b["amr"])

    upper = make_client().sign_in_with_password(
        {"email": email_user.email.upper(), "password": email_user.password}
    )
    assert upper.user.id == email_user.user.id


def test_sign_in_wrong_password_is_invalid_credentials(make_client, email_user):
    client = make_client()
    with pytest.raises(AuthApiError) as exc:
        client.sign_in_with_password({"email": email_user.email, "password": "definitely-wrong"})
    assert exc.value.code == "invalid_credentials"
    assert exc.value.status == 400
    assert client.get_session() is None

    with pytest.raises(AuthApiError) as unknown:
        client.sign_in_with_password({"email": random_email(), "password": "whatever123"})
    assert unknown.value.code == "invalid_credentials"
    assert unknown.value.status == 400
    assert unknown.value.message == exc.value.message


def test_sign_in_with_password_phone(make_client):
    digits, password = random_phone_digits(), random_password()
    signup = make_client().sign_up({"phone": f"+{digits}", "password": password})
    res = make_client().sign_in_with_password({"phone": f"+{digits}", "password": password})
    assert_session(res.session, "sign_in_with_password(phone)")
    assert res.user.id == signup.user.id
    assert res.user.phone == digits

    with pytest.raises(AuthApiError) as exc:
        make_client().sign_in_with_password({"phone": f"+{digits}", "password": "wrong-password"})
    assert exc.value.code == "invalid_credentials"


def test_get_user_and_update_user_data(make_client, email_user):
    client = make_client()
    client.sign_in_with_password({"email": email_user.email, "password": email_user.password})

    got = client.get_user()
    assert got is not None
    assert got.user.id == email_user.user.id
    assert got.user.email == email_user.email

    upd = client.update_user({"data": {"nickname": "x"}})
    assert upd.user.id == email_user.user.id
    assert upd.user.user_metadata["nickname"] == "x"

    again = client.get_user()
    assert again.user.user_metadata["nickname"] == "x"
    assert again.user.user_metadata.get("email") == email_user.email, "existing keys must be kept"
    assert client.get_session().user.user_metadata["nickname"] == "x"


def test_update_user_password(make_client, email_user):
    client = make_client()
    client.sign_in_with_password({"email": email_user.email, "password": email_user.password})

    new_password = random_password()
    upd = client.update_user({"password": new_password})
    assert upd.user.id == email_user.user.id

    client.sign_out()
    assert client.get_session() is None

    res = client.sign_in_with_password({"email": email_user.email, "password": new_password})
    assert res.user.id == email_user.user.id

    with pytest.raises(AuthApiError) as exc:
        make_client().sign_in_with_password(
            {"email": email_user.email, "password": email_user.password}
        )
    assert exc.value.code == "invalid_credentials"
    assert exc.value.status == 400
