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
