"""MFA with TOTP factors through supabase-auth (SPEC §1.17, §2.1, §4.1): mfa.enroll / challenge /
verify / challenge_and_verify / list_factors / get_authenticator_assurance_level / unenroll and
admin.mfa.list_factors / delete_factor. Codes are computed here (RFC 6238, HMAC-SHA1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time

import pytest
from supabase_auth import SyncGoTrueAdminAPI
from supabase_auth.errors import AuthApiError

from helpers import JWT_SECRET, URL, decode_and_verify_jwt, random_email, random_password


def totp(secret: str, offset: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int(time.time()) // 30 + offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    n = struct.unpack(">I", mac[o : o + 4])[0] & 0x7FFFFFFF
    return f"{n % 1_000_000:06d}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def admin_api() -> SyncGoTrueAdminAPI:
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"role": "service_role", "iat": now, "exp": now + 3600}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64url(sig)}"
    return SyncGoTrueAdminAPI(url=URL, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def signed_in(make_client):
    client = make_client()
    res = client.sign_up({"email": random_email(), "password": random_password()})
    assert res.session is not None
    return client, res.user


def test_enroll_challenge_verify_aal_and_unenroll(signed_in):
    client, _ = signed_in
    aal = client.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal1", "aal1")

    enrolled = client.mfa.enroll({"factor_type": "totp", "friendly_name": "phone app"})
    assert enrolled.type == "totp"
    assert enrolled.friendly_name == "phone app"
    assert enrolled.totp.qr_code.startswith("data:image/svg+xml;utf-8,") and "<svg" in enrolled.totp.qr_code
    assert enrolled.totp.uri.startswith("otpauth://totp/")
    factor_id, secret = enrolled.id, enrolled.totp.secret

    challenge = client.mfa.challenge({"factor_id": factor_id})
    assert challenge.id and challenge.expires_at > time.time()
    res = client.mfa.verify({"factor_id": factor_id, "challenge_id": challenge.id, "code": totp(secret)})
    claims = decode_and_verify_jwt(res.access_token)
    assert claims["aal"] == "aal2"
    assert claims["amr"][0]["method"] == "totp"

    aal = client.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal2", "aal2")
    factors = client.mfa.list_factors()
    assert [f.status for f in factors.totp] == ["verified"]

    c2 = client.mfa.challenge({"factor_id": factor_id})
    with pytest.raises(AuthApiError) as err:
        client.mfa.verify({"factor_id": factor_id, "challenge_id": c2.id, "code": "000000x"})
    assert err.value.code == "mfa_verification_failed"

    # challenge_and_verify with the next step's code (this step's was used once already).
    client.mfa.challenge_and_verify({"factor_id": factor_id, "code": totp(secret, 1)})

    assert client.mfa.unenroll({"factor_id": factor_id}).id == factor_id
    assert client.mfa.list_factors().all == []


def test_admin_list_and_delete_factor(signed_in):
    client, user = signed_in
    enrolled = client.mfa.enroll({"factor_type": "totp"})
    admin = admin_api()
    try:
        factors = admin.mfa.list_factors({"user_id": user.id})
        assert [f.id for f in factors] == [enrolled.id]
        assert admin.mfa.delete_factor({"user_id": user.id, "id": enrolled.id}).id == enrolled.id
        assert admin.mfa.list_factors({"user_id": user.id}) == []
    finally:
        admin.close()
