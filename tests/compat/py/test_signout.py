"""Flows 8-9: sign_out with scopes global / others / local.

supabase-auth swallows 401/403/404 from /logout, so the server-side effect is
checked with raw HTTP too.
"""

from __future__ import annotations

import pytest
from supabase_auth.errors import AuthApiError

from helpers import STORAGE_KEY, assert_api_error, raw, raw_refresh


def signed_in(make_client, email_user):
    client = make_client()
    session = client.sign_in_with_password(
        {"email": email_user.email, "password": email_user.password}
    ).session
    return client, session


def assert_access_token_dead(make_client, access_token: str) -> None:
    assert_api_error(raw("GET", "/user", jwt=access_token), 403, "session_not_found")
    # The Python client does not map session_not_found: it raises the API error.
    with pytest.raises(AuthApiError) as exc:
        make_client().get_user(access_token)
    assert exc.value.code == "session_not_found"
    assert exc.value.status == 403


def test_logout_is_204_empty(make_client, email_user):
    res = raw("POST", "/logout?scope=local", jwt=email_user.session.access_token)
    assert res.status == 204, f"{res.status} {res.text}"
    assert res.text == ""
    assert_access_token_dead(make_client, email_user.session.access_token)
    assert_api_error(raw("POST", "/logout"), 401, "no_authorization")


def test_sign_out_global(make_client, email_user):
    client, session = signed_in(make_client, email_user)
    events = []
    client.on_auth_state_change(lambda event, s: events.append(event))

    client.sign_out()
    assert "SIGNED_OUT" in events
    assert client.get_session() is None
    assert client._storage.get_item(STORAGE_KEY) is None

    assert_access_token_dead(make_client, session.access_token)
    # sign_out() without a scope is global: the sign-up session is gone as well.
    assert_access_token_dead(make_client, email_user.session.access_token)
    assert_api_error(raw_refresh(session.refresh_token), 400, "refresh_token_not_found")
    with pytest.raises(AuthApiError) as exc:
        make_client().refresh_session(session.refresh_token)
    assert exc.value.status == 400


def test_sign_out_others(make_client, email_user):
    other, other_session = signed_in(make_client, email_user)
    current, current_session = signed_in(make_client, email_user)

    current.sign_out({"scope": "others"})

    me = current.get_user()
    assert me is not None and me.user.id == email_user.user.id
    assert current.get_session().access_token == current_session.access_token
    current.refresh_session()

    assert_access_token_dead(make_client, other_session.access_token)
    with pytest.raises(AuthApiError) as exc:
        other.refresh_session()
    assert exc.value.status == 400
    assert exc.value.code == "refresh_token_not_found"


def test_sign_out_local(make_client, email_user):
    keep, _ = signed_in(make_client, email_user)
    leave, leave_session = signed_in(make_client, email_user)

    leave.sign_out({"scope": "local"})
    assert leave.get_session() is None

    assert_access_token_dead(make_client, leave_session.access_token)
    assert_api_error(raw_refresh(leave_session.refresh_token), 400, "refresh_token_not_found")

    assert keep.get_user().user.id == email_user.user.id
    keep.refresh_session()
