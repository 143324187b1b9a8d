"""Flows 1-4: sign-up with e-mail / phone, duplicate sign-up, weak password."""

from __future__ import annotations

import json

import pytest
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from helpers import (
    STORAGE_KEY,
    assert_session,
    decode_and_verify_jwt,
    random_email,
    random_password,
    random_phone_digits,
)


def test_sign_up_email_returns_session(make_client):
    lower = random_email()
    email = "U" + lower[1:].replace("@example.com", "@Example.COM")
    password = random_password()
    client = make_client()

    res = client.sign_up({"email": email, "password": password})
    assert_session(res.session, "sign_up")
    user = res.user
    assert user is not None
    assert user.email == lower
    assert res.session.user.id == user.id
    assert user.aud == "authenticated"
    assert user.role == "authenticated"
    assert user.email_confirmed_at is not None, "MAILER_AUTOCONFIRM must confirm the email"
    assert user.app_metadata["provider"] == "email"
    assert user.app_metadata["providers"] == ["email"]

    assert user.identities is not None and len(user.identities) == 1
    identity = user.identities[0]
    assert identity.provider == "email"
    assert identity.user_id == user.id
    assert identity.identity_data["email"] == lower

    payload = decode_and_verify_jwt(res.session.access_token)
    assert payload["sub"] == user.id
    assert payload["aud"] == "authenticated"
    assert payload["role"] == "authenticated"
    assert payload["email"] == lower
    assert isinstance(payload["session_id"], str)
    assert payload["exp"] == res.session.expires_at

    # Persisted by the client in its (default, in-memory) storage.
    stored = json.loads(client._storage.get_item(STORAGE_KEY))
    assert stored["refresh_token"] == res.session.refresh_token
    assert client.get_session().access_token == res.session.access_token


def test_sign_up_phone_returns_session_without_plus(make_client):
    digits = random_phone_digits()
    res = make_client().sign_up({"phone": f"+{digits}", "password": random_password()})
    assert_session(res.session, "sign_up(phone)")
    user = res.user
    assert user.phone == digits
    assert user.phone_confirmed_at is not None, "SMS_AUTOCONFIRM must confirm the phone"
    assert user.app_metadata["provider"] == "phone"
    assert user.identities is not None and len(user.identities) == 1
    assert user.identities[0].provider == "phone"
    payload = decode_and_verify_jwt(res.session.access_token)
    assert payload["sub"] == user.id
    assert payload["phone"] == digits


def test_sign_up_existing_email_is_user_already_exists(make_client):
    email, password = random_email(), random_password()
    make_client().sign_up({"email": email, "password": password})

    with pytest.raises(AuthApiError) as exc:
        make_client().sign_up({"email": email, "password": random_password()})
    assert exc.value.code == "user_already_exists"
    assert exc.value.status == 422

    with pytest.raises(AuthApiError) as exc2:
        make_client().sign_up({"email": email.upper(), "password": password})
    assert exc2.value.code == "user_already_exists"


def test_sign_up_weak_password(make_client):
    email = random_email()
    client = make_client()
    with pytest.raises(AuthWeakPasswordError) as exc:
        client.sign_up({"email": email, "password": "abc"})
    err = exc.value
    assert err.code == "weak_password"
    assert err.status == 422
    assert isinstance(err.reasons, list)
    assert "length" in err.reasons
    assert client.get_session() is None

    # Nothing was created: the address is still free.
    res = client.sign_up({"email": email, "password": random_password()})
    assert res.user.email == email
