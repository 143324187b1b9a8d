"""Flow 10: GET /settings and GET /health."""

from __future__ import annotations

from helpers import raw


def test_settings():
    res = raw("GET", "/settings")
    assert res.status == 200, res.text
    assert "application/json" in (res.headers.get("Content-Type") or "")
    s = res.body
    assert s["external"]["email"] is True
    assert s["external"]["phone"] is True
    assert s["external"]["google"] is False
    assert s["mailer_autoconfirm"] is True
    assert s["phone_autoconfirm"] is True
    assert s["disable_signup"] is False


def test_health():
    res = raw("GET", "/health")
    assert res.status == 200, res.text
    assert "application/json" in (res.headers.get("Content-Type") or "")
    assert res.body["name"] == "GoTrue"
    assert isinstance(res.body["version"], str)
    assert isinstance(res.body["description"], str)
