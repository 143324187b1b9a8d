"""OAuth / OpenID Connect through supabase-auth (Python) against a real OpenID provider.

run.sh starts oauth2-mock-server (tests/compat/js/oidc-provider.mjs) and a ferrotrue with it
configured as the `keycloak` provider and as the generic `oidc` provider (FERROTRUE_OAUTH_URL).
The provider approves every /authorize at once; the `login_hint` passed through ferrotrue
becomes the user's email. With no browser, the redirects are followed by hand up to the app's
URL.

supabase-auth validates `provider` against its list of provider names (a pydantic Literal), so
`sign_in_with_oauth` / `link_identity` cannot name the generic `oidc` provider: the redirect
flows here use `keycloak`; `sign_in_with_id_token` takes any name and uses `oidc`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator

import pytest
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from helpers import assert_session, decode_and_verify_jwt, random_email, random_password

OAUTH_URL = os.environ.get("FERROTRUE_OAUTH_URL", "").rstrip("/")
OIDC_ISSUER = os.environ.get("FERROTRUE_OIDC_ISSUER", "")
KEYCLOAK_ISSUER = os.environ.get("FERROTRUE_KEYCLOAK_ISSUER", "")
CLIENT_ID = os.environ.get("FERROTRUE_OIDC_CLIENT_ID", "")
APP = "http://localhost:3000"

if not OAUTH_URL or not OIDC_ISSUER or not KEYCLOAK_ISSUER:
    raise RuntimeError("FERROTRUE_OAUTH_URL is not set (run the suite through tests/compat/run.sh)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def follow_to_app(url: str) -> str:
    """Follows 302/303 redirects until one points at the app; returns that Location."""
    current = url
    for _ in range(10):
        try:
            with _opener.open(current, timeout=10) as resp:
                raise AssertionError(f"GET {current}: HTTP {resp.status} {resp.read()!r}")
        except urllib.error.HTTPError as e:
            assert e.code in (302, 303), f"GET {current}: HTTP {e.code} {e.read()!r}"
            location = e.headers["Location"]
        if location.startswith(APP):
            return location
        current = urllib.parse.urljoin(current, location)
    raise AssertionError("too many redirects")


def fragment_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(location.partition("#")[2], keep_blank_values=True))


def query_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location.partition("#")[0]).query))


def provider_id_token(email: str, nonce: str | None = None) -> str:
    form = {"grant_type": "password", "username": email, "client_id": CLIENT_ID}
    if nonce:
        form["nonce"] = nonce
    req = urllib.request.Request(f"{OIDC_ISSUER}/token", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["id_token"]


@pytest.fixture
def oauth_client() -> Iterator:
    clients: list[SyncGoTrueClient] = []

    def factory(flow_type: str = "implicit") -> SyncGoTrueClient:
        client = SyncGoTrueClient(
            url=OAUTH_URL, auto_refresh_token=False, persist_session=True, flow_type=flow_type
        )
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


def test_sign_in_with_oauth_pkce(oauth_client):
    email = random_email()
    client = oauth_client("pkce")
    res = client.sign_in_with_oauth(
        {
            "provider": "keycloak",
            "options": {"redirect_to": f"{APP}/auth/callback", "query_params": {"login_hint": email}},
        }
    )
    assert res.url.startswith(f"{OAUTH_URL}/authorize?"), res.url
    assert "code_challenge=" in res.url

    location = follow_to_app(res.url)
    assert location.startswith(f"{APP}/auth/callback?code="), location
    code = query_of(location)["code"]
    exchanged = client.exchange_code_for_session({"auth_code": code})
    assert_session(exchanged.session, "exchange_code_for_session")
    assert exchanged.session.provider_token
    assert exchanged.user.email == email
    assert exchanged.user.identities[0].provider == "keycloak"
    assert decode_and_verify_jwt(exchanged.session.access_token)["amr"][0]["method"] == "oauth"


def test_sign_in_with_oauth_implicit(oauth_client):
    email = random_email()
    client = oauth_client()
    res = client.sign_in_with_oauth(
        {"provider": "keycloak", "options": {"redirect_to": APP, "query_params": {"login_hint": email}}}
    )
    f = fragment_of(follow_to_app(res.url))
    assert f["provider_token"] and f["sb"] == "" and f["token_type"] == "bearer"
    session = client.set_session(f["access_token"], f["refresh_token"])
    assert_session(session.session, "set_session from the fragment")
    user = client.get_user().user
    assert user.email == email
    assert user.app_metadata["provider"] == "keycloak"


def test_link_and_unlink_identity(oauth_client):
    client = oauth_client()
    email = random_email()
    signup = client.sign_up({"email": email, "password": random_password()})
    assert_session(signup.session, "sign_up")

    linked = client.link_identity(
        {
            "provider": "keycloak",
            "options": {"redirect_to": APP, "query_params": {"login_hint": random_email()}},
        }
    )
    assert linked.url.startswith(f"{KEYCLOAK_ISSUER}/protocol/openid-connect/auth?"), linked.url
    location = follow_to_app(linked.url)
    assert decode_and_verify_jwt(fragment_of(location)["access_token"])["sub"] == signup.user.id

    identities = client.get_user_identities().identities
    assert sorted(i.provider for i in identities) == ["email", "keycloak"]
    client.unlink_identity(next(i for i in identities if i.provider == "keycloak"))
    remaining = client.get_user_identities().identities
    assert [i.provider for i in remaining] == ["email"]
    with pytest.raises(AuthApiError) as err:
        client.unlink_identity(remaining[0])
    assert err.value.status == 422
    assert err.value.code == "single_identity_not_deletable"


def test_sign_in_with_id_token(oauth_client):
    email = random_email()
    nonce = secrets.token_hex(16)
    token = provider_id_token(email, hashlib.sha256(nonce.encode()).hexdigest())
    res = oauth_client().sign_in_with_id_token({"provider": "oidc", "token": token, "nonce": nonce})
    assert_session(res.session, "sign_in_with_id_token")
    assert res.user.email == email
    with pytest.raises(AuthApiError) as err:
        oauth_client().sign_in_with_id_token({"provider": "oidc", "token": token, "nonce": "nope"})
    assert err.value.status == 400
    assert err.value.message == "Nonces mismatch"
