"""Asymmetric signing keys: a server with an ES256 GOTRUE_JWT_KEYS (FERROTRUE_KEYS_URL).

supabase-auth's get_claims() verifies such tokens itself with the key published at
/.well-known/jwks.json (PyJWT + cryptography) instead of asking GET /user.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError, AuthInvalidJwtError

from helpers import assert_session, random_email, random_password

KEYS_URL = os.environ.get("FERROTRUE_KEYS_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not KEYS_URL, reason="FERROTRUE_KEYS_URL is not set")


def _part(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.fixture
def keys_client():
    client = SyncGoTrueClient(url=KEYS_URL, auto_refresh_token=False, persist_session=True)
    yield client
    client.close()


def test_get_claims_verifies_es256_with_the_jwks_without_get_user(keys_client, monkeypatch):
    res = keys_client.sign_up({"email": random_email(), "password": random_password()})
    assert_session(res.session, "sign_up")
    header = _part(res.session.access_token.split(".")[0])
    assert header["alg"] == "ES256"
    assert header.get("kid")

    def no_get_user(*_args, **_kwargs):
        raise AssertionError("get_claims must verify ES256 tokens locally, not with GET /user")

    monkeypatch.setattr(keys_client, "get_user", no_get_user)
    claims = keys_client.get_claims()
    assert claims is not None
    assert claims["claims"]["sub"] == res.user.id
    assert claims["headers"]["kid"] == header["kid"]
    monkeypatch.undo()
    # The server accepts the token and keeps the algorithm on refresh.
    assert keys_client.get_user().user.id == res.user.id
    refreshed = keys_client.refresh_session()
    assert _part(refreshed.session.access_token.split(".")[0])["alg"] == "ES256"


def test_a_changed_payload_fails_locally_and_on_the_server(keys_client):
    res = keys_client.sign_up({"email": random_email(), "password": random_password()})
    h, p, s = res.session.access_token.split(".")
    payload = _part(p)
    payload["role"] = "service_role"
    forged_payload = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    forged = f"{h}.{forged_payload}.{s}"
    with pytest.raises(AuthInvalidJwtError):
        keys_client.get_claims(forged)
    with pytest.raises(AuthApiError) as err:
        keys_client.get_user(forged)
    assert err.value.status == 403
    assert err.value.code == "bad_jwt"
