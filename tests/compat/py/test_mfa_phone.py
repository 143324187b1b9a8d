"""MFA with phone factors through supabase-auth (SPEC §1.17) against the phone-flow server
(GOTRUE_MFA_PHONE_ENROLL_ENABLED / _VERIFY_ENABLED on, codes through the send-SMS hook whose
receiver, tests/compat/sms_hook.py, appends each payload to FERROTRUE_SMS_LOG):
mfa.enroll(factor_type phone) / challenge / verify / list_factors / AAL / unenroll and
admin.mfa.list_factors / delete_factor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

from helpers import JWT_SECRET, decode_and_verify_jwt, random_email, random_password, random_phone_digits

PHONE_URL = os.environ.get("FERROTRUE_PHONE_URL", "").rstrip("/")
SMS_LOG = os.environ.get("FERROTRUE_SMS_LOG", "")
if not PHONE_URL or not SMS_LOG:
    raise RuntimeError(
        "FERROTRUE_PHONE_URL / FERROTRUE_SMS_LOG are not set (run the suite through tests/compat/run.sh)"
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def admin_api() -> SyncGoTrueAdminAPI:
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"role": "service_role", "iat": now, "exp": now + 3600}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return SyncGoTrueAdminAPI(url=PHONE_URL, headers={"Authorization": f"Bearer {header}.{payload}.{_b64url(sig)}"})


def mfa_codes_to(digits: str) -> list[str]:
    with open(SMS_LOG, encoding="utf-8") as f:
        payloads = [json.loads(line) for line in f if line.strip()]
    return [
        p["sms"]["otp"]
        for p in payloads
        if isinstance(p, dict) and p.get("sms", {}).get("phone") == digits and p["sms"].get("sms_type") == "mfa"
    ]


def wait_for_code(digits: str, after: int = 0) -> str:
    deadline = time.monotonic() + 5.0
    while True:
        got = mfa_codes_to(digits)
        if len(got) > after:
            return got[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no MFA SMS #{after + 1} to {digits}")
        time.sleep(0.05)


@pytest.fixture
def signed_in():
    client = SyncGoTrueClient(url=PHONE_URL, auto_refresh_token=False, persist_session=True)
    res = client.sign_up({"email": random_email(), "password": random_password()})
    assert res.session is not None
    return client, res.user


def test_phone_factor_enroll_challenge_verify(signed_in):
    client, user = signed_in
    digits = random_phone_digits()
    enrolled = client.mfa.enroll({"factor_type": "phone", "phone": f"+{digits}", "friendly_name": "mobile"})
    assert enrolled.type == "phone"
    assert enrolled.friendly_name == "mobile"
    assert enrolled.phone == f"+{digits}"

    challenge = client.mfa.challenge({"factor_id": enrolled.id, "channel": "sms"})
    assert challenge.factor_type == "phone"
    code = wait_for_code(digits)

    with pytest.raises(AuthApiError) as err:
        client.mfa.verify(
            {"factor_id": enrolled.id, "challenge_id": challenge.id, "code": "111111" if code == "000000" else "000000"}
        )
    assert (err.value.status, err.value.code) == (422, "mfa_verification_failed")
    with pytest.raises(AuthApiError) as err:
        client.mfa.challenge({"factor_id": enrolled.id})
    assert (err.value.status, err.value.code) == (429, "over_sms_send_rate_limit")

    verified = client.mfa.verify({"factor_id": enrolled.id, "challenge_id": challenge.id, "code": code})
    claims = decode_and_verify_jwt(verified.access_token)
    assert claims["sub"] == user.id
    assert claims["aal"] == "aal2"
    assert any(m["method"] == "mfa/phone" for m in claims["amr"]), claims["amr"]

    aal = client.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal2", "aal2")
    factors = client.mfa.list_factors()
    assert [f.id for f in factors.phone] == [enrolled.id]
    assert factors.all[0].factor_type == "phone"

    with pytest.raises(AuthApiError) as err:
        client.mfa.enroll({"factor_type": "phone", "phone": digits})
    assert (err.value.status, err.value.code) == (422, "mfa_verified_factor_exists")

    client.mfa.unenroll({"factor_id": enrolled.id})
    assert client.mfa.list_factors().all == []


def test_admin_lists_and_deletes_phone_factors(signed_in):
    client, user = signed_in
    digits = random_phone_digits()
    enrolled = client.mfa.enroll({"factor_type": "phone", "phone": digits})
    admin = admin_api()
    listed = admin.mfa.list_factors({"user_id": user.id})
    assert [(f.id, f.factor_type) for f in listed] == [(enrolled.id, "phone")]
    deleted = admin.mfa.delete_factor({"user_id": user.id, "id": enrolled.id})
    assert deleted.id == enrolled.id
    assert admin.mfa.list_factors({"user_id": user.id}) == []
