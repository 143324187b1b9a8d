"""Fixtures for the supabase-auth (Python) compat suite (helpers live in helpers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
from supabase_auth import SyncGoTrueClient

from helpers import URL, assert_session, random_email, random_password


@pytest.fixture
def make_client() -> Iterator[Callable[[], SyncGoTrueClient]]:
    """Factory of clients built as an app would build them; closed after the test."""
    clients: list[SyncGoTrueClient] = []

    def factory() -> SyncGoTrueClient:
        client = SyncGoTrueClient(url=URL, auto_refresh_token=False, persist_session=True)
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


@dataclass
class EmailUser:
    email: str
    password: str
    user: Any
    session: Any


@pytest.fixture
def email_user(make_client) -> EmailUser:
    """A freshly signed-up (autoconfirmed) e-mail user."""
    email, password = random_email(), random_password()
    res = make_client().sign_up({"email": email, "password": password})
    assert_session(res.session, "sign_up (fixture)")
    return EmailUser(email, password, res.user, res.session)


# ---- email flows (second server: autoconfirm off, real SMTP; see mail.py) ----------------


@pytest.fixture
def make_email_client() -> Iterator[Callable[..., SyncGoTrueClient]]:
    """Factory of clients for the email-flow server; each records its auth events in `.events`."""
    from mail import EMAIL_URL

    clients: list[SyncGoTrueClient] = []

    def factory(flow_type: str = "implicit") -> SyncGoTrueClient:
        client = SyncGoTrueClient(
            url=EMAIL_URL, auto_refresh_token=False, persist_session=True, flow_type=flow_type
        )
        client.events = []  # type: ignore[attr-defined]
        client.on_auth_state_change(lambda event, session: client.events.append((event, session)))
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


@dataclass
class ConfirmedUser:
    email: str
    password: str
    user: Any
    session: Any
    client: SyncGoTrueClient


@pytest.fixture
def confirmed_user(make_email_client) -> ConfirmedUser:
    """A user of the email-flow server, confirmed with the mailed code; `client` holds its session."""
    from mail import SUBJECT_CONFIRMATION, wait_for_mail

    email, password = random_email(), random_password()
    client = make_email_client()
    res = client.sign_up({"email": email, "password": password})
    assert res.session is None, "sign_up without autoconfirm must not return a session"
    mail = wait_for_mail(email, SUBJECT_CONFIRMATION)
    verified = client.verify_otp({"email": email, "token": mail.code, "type": "signup"})
    assert_session(verified.session, "verify_otp signup (fixture)")
    return ConfirmedUser(email, password, verified.user, verified.session, client)
