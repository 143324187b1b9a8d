"""Stored session, set_session and auth state events in the Python client."""

from __future__ import annotations

from helpers import STORAGE_KEY


def test_events_and_stored_session(make_client, email_user):
    client = make_client()
    events = []
    sub = client.on_auth_state_change(lambda event, session: events.append((event, session)))
    assert client.get_session() is None

    res = client.sign_in_with_password({"email": email_user.email, "password": email_user.password})
    stored = client.get_session()
    assert stored.access_token == res.session.access_token
    assert stored.refresh_token == res.session.refresh_token
    assert stored.user.id == email_user.user.id

    refreshed = client.refresh_session()
    client.update_user({"data": {"color": "blue"}})
    client.sign_out()

    names = [e for e, _ in events]
    assert names == ["SIGNED_IN", "TOKEN_REFRESHED", "USER_UPDATED", "SIGNED_OUT"]
    assert events[0][1].access_token == res.session.access_token
    assert events[1][1].refresh_token == refreshed.session.refresh_token
    assert events[2][1].user.user_metadata["color"] == "blue"
    assert events[3][1] is None
    assert client._storage.get_item(STORAGE_KEY) is None
    sub.unsubscribe()


def test_set_session(make_client, email_user):
    client = make_client()
    res = client.set_session(email_user.session.access_token, email_user.session.refresh_token)
    assert res.user.id == email_user.user.id
    assert client.get_session().access_token == email_user.session.access_token
    assert client.get_user().user.email == email_user.email
