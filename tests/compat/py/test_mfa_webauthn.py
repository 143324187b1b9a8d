"""MFA with WebAuthn factors through supabase-auth (SPEC §1.17).

supabase-auth 2.34 has no WebAuthn API: its enroll and challenge response models only accept
`type` totp/phone (against GoTrue as well), so enroll and challenge go over plain HTTP here.
What the client does handle is checked through it: `mfa.verify` with a `webauthn` object (the
session it saves is aal2), `list_factors`, the assurance level, and the admin factor routes.
The credential comes from a tiny software security key (cryptography, ES256, `none`
attestation). The server's relying party: localhost, http://localhost:3000.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import assert_api_error, decode_and_verify_jwt, raw, random_email, random_password
from test_mfa import admin_api

RP_ID = "localhost"
ORIGIN = "http://localhost:3000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cbor(v) -> bytes:
    """Just enough CBOR for an attestation object."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        if n < 256:
            return bytes([major << 5 | 24, n])
        return bytes([major << 5 | 25]) + struct.pack(">H", n)

    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, str):
        return head(3, len(v.encode())) + v.encode()
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(type(v))


class SoftKey:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cred_id = os.urandom(32)
        self.counter = 0

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        self.counter += 1
        return hashlib.sha256(RP_ID.encode()).digest() + bytes([flags]) + struct.pack(">I", self.counter) + extra

    @staticmethod
    def _client_data(kind: str, public_key: dict, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": public_key["challenge"], "origin": origin}).encode()

    def create(self, public_key: dict, origin: str = ORIGIN) -> dict:
        client_data = self._client_data("webauthn.create", public_key, origin)
        n = self.key.public_key().public_numbers()
        cose = cbor({1: 2, 3: -7, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")})
        acd = bytes(16) + struct.pack(">H", len(self.cred_id)) + self.cred_id + cose
        att = cbor({"fmt": "none", "attStmt": {}, "authData": self._auth_data(0x41, acd)})
        return {
            "id": b64url(self.cred_id),
            "rawId": b64url(self.cred_id),
            "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(att)},
            "clientExtensionResults": {},
        }

    def get(self, public_key: dict, origin: str = ORIGIN) -> dict:
        client_data = self._client_data("webauthn.get", public_key, origin)
        auth_data = self._auth_data(0x01)
        sig = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.cred_id),
            "rawId": b64url(self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(sig),
            },
            "clientExtensionResults": {},
        }


def _challenge(token: str, factor_id: str) -> dict:
    res = raw("POST", f"/factors/{factor_id}/challenge", body={"webauthn": {"rpId": RP_ID}}, jwt=token)
    assert res.status == 200, res.text
    assert res.body["type"] == "webauthn"
    return res.body


def _verify(client, factor_id: str, challenge: dict, kind: str, credential: dict):
    return client.mfa.verify(
        {
            "factor_id": factor_id,
            "challenge_id": challenge["id"],
            "webauthn": {"type": kind, "credential_response": credential},
        }
    )


def test_register_then_authenticate_with_a_security_key(make_client):
    email, password = random_email(), random_password()
    client = make_client()
    res = client.sign_up({"email": email, "password": password})
    token = res.session.access_token
    enrolled = raw("POST", "/factors", body={"factor_type": "webauthn", "friendly_name": "key"}, jwt=token)
    assert enrolled.status == 200, enrolled.text
    assert (enrolled.body["type"], enrolled.body["friendly_name"]) == ("webauthn", "key")
    factor_id = enrolled.body["id"]

    c = _challenge(token, factor_id)
    assert c["webauthn"]["type"] == "create"
    public_key = c["webauthn"]["credential_options"]["publicKey"]
    assert public_key["rp"]["id"] == RP_ID and public_key["user"]["name"] == email
    key = SoftKey()
    verified = _verify(client, factor_id, c, "create", key.create(public_key))
    claims = decode_and_verify_jwt(verified.access_token)
    assert (claims["aal"], claims["amr"][0]["method"]) == ("aal2", "mfa/webauthn")
    aal = client.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal2", "aal2")
    assert [(f.factor_type, f.status) for f in client.mfa.list_factors().all] == [("webauthn", "verified")]

    # A new sign-in: aal1 until the key answers the request options.
    client2 = make_client()
    session = client2.sign_in_with_password({"email": email, "password": password}).session
    aal = client2.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal1", "aal2")
    c = _challenge(session.access_token, factor_id)
    assert c["webauthn"]["type"] == "request"
    public_key = c["webauthn"]["credential_options"]["publicKey"]
    assert [a["id"] for a in public_key["allowCredentials"]] == [b64url(key.cred_id)]
    _verify(client2, factor_id, c, "request", key.get(public_key))
    aal = client2.mfa.get_authenticator_assurance_level()
    assert (aal.current_level, aal.next_level) == ("aal2", "aal2")

    # The same key from another origin: refused.
    c = _challenge(session.access_token, factor_id)
    res = raw(
        "POST",
        f"/factors/{factor_id}/verify",
        body={
            "challenge_id": c["id"],
            "webauthn": {
                "type": "request",
                "credential_response": key.get(c["webauthn"]["credential_options"]["publicKey"], "https://evil.example.net"),
            },
        },
        jwt=session.access_token,
    )
    assert_api_error(res, 422, "mfa_verification_failed")

    admin = admin_api()
    try:
        user_id = verified.user.id
        assert [f.factor_type for f in admin.mfa.list_factors({"user_id": user_id})] == ["webauthn"]
        assert admin.mfa.delete_factor({"user_id": user_id, "id": factor_id}).id == factor_id
        assert admin.mfa.list_factors({"user_id": user_id}) == []
    finally:
        admin.close()
