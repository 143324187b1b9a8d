"""Flow 7: refresh-token rotation and reuse detection."""

from __future__ import annotations

import time

import pytest
from supabase_auth.errors import AuthApiError

from helpers import (
    API_VERSION,
    assert_api_error,
    assert_session,
    decode_and_verify_jwt,
    raw,
    raw_refresh,
)


def test_refresh_session_rotates_tokens(make_client, email_user):
    client = make_client()
    before = client.sign_in_with_password(
        {"email": email_user.email, "password": email_user.password}
    ).session

    time.sleep(1.1)  # JWT iat has one-second resolution
    res = client.refresh_session()
    assert_session(res.session, "refresh_session")
    assert res.user.id == email_user.user.id
    assert res.session.refresh_token != before.refresh_token
    assert res.session.access_token != before.access_token

    a = decode_and_verify_jwt(before.access_token)
    b = decode_and_verify_jwt(res.session.access_token)
    assert a["session_id"] == b["session_id"]
    assert client.get_session().refresh_token == res.session.refresh_token
    assert client.get_user().user.id == email_user.user.id


def test_refresh_token_reuse_detection(make_client, email_user):
    client = make_client()
    t1 = client.sign_in_with_password(
        {"email": email_user.email, "password": email_user.password}
    ).session.refresh_token
    t2 = client.refresh_session().session.refresh_token
    t3 = client.refresh_session().session.refresh_token
    assert len({t1, t2, t3}) == 3

    # Re-sending the parent (T2) of the active token (T3) returns T3 again.
    again = raw_refresh(t2)
    assert again.status == 200, again.text
    assert again.body["refresh_token"] == t3
    assert isinstance(again.body["access_token"], str)
    assert again.body["user"]["id"] == email_user.user.id

    # An older token (T1) is a reuse: 400 and the whole family is revoked.
    assert_api_error(raw_refresh(t1), 400, "refresh_token_already_used")
    assert_api_error(raw_refresh(t3), 400, "refresh_token_already_used")

    with pytest.raises(AuthApiError) as exc:
        make_client().refresh_session(t3)
    assert exc.value.status == 400
    assert exc.value.code == "refresh_token_already_used"


def test_refresh_unknown_token(make_client):
    assert_api_error(raw_refresh("thisisnotarealtoken"), 400, "refresh_token_not_found")
    with pytest.raises(AuthApiError) as exc:
        make_client().refresh_session("thisisnotarealtoken")
    assert exc.value.code == "refresh_token_not_found"


def test_legacy_error_format_without_version_header():
    res = raw(
        "POST",
        "/token?grant_type=refresh_token",
        body={"refresh_token": "thisisnotarealtoken"},
        api_version=None,
    )
    assert res.status == 400
    assert res.body["code"] == 400
    assert res.body["error_code"] == "refresh_token_not_found"
    assert isinstance(res.body["msg"], str)
    assert res.headers.get("X-Supabase-Api-Version") != API_VERSION
