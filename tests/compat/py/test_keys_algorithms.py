"""Every signing algorithm, verified by an independent JOSE library (PyJWT + cryptography).

For RS256, ES256 and EdDSA: `ferrotrue keys generate --alg X` makes a key set, a server of its
own is started with it as GOTRUE_JWT_KEYS, the official client signs up, and PyJWT verifies the
access token against the key published at /.well-known/jwks.json — nothing of ferrotrue's code
takes part in the verification. Needs FERROTRUE_BIN (run.sh exports it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import jwt
import pytest
from supabase_auth import SyncGoTrueClient

from helpers import random_email, random_password

BIN = os.environ.get("FERROTRUE_BIN", "")
pytestmark = pytest.mark.skipif(not BIN, reason="FERROTRUE_BIN is not set")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["RS256", "ES256", "EdDSA"])
def keyed_server(request):
    alg = request.param
    keys = subprocess.run([BIN, "keys", "generate", "--alg", alg], check=True, capture_output=True, text=True).stdout
    port = _free_port()
    data = tempfile.mkdtemp(prefix=f"ferrotrue-keys-{alg}-")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "GOTRUE_API_HOST": "127.0.0.1",
        "FERROTRUE_DATA_DIR": data,
        "GOTRUE_JWT_SECRET": "compat-suite-secret-at-least-32-chars-long",
        "GOTRUE_JWT_KEYS": keys,
        "GOTRUE_MAILER_AUTOCONFIRM": "true",
        "GOTRUE_LOG_LEVEL": "warn",
    }
    proc = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"the {alg} server did not start: {proc.stderr.read().decode()[-2000:]}")
    yield alg, url, json.loads(keys)
    proc.terminate()
    proc.wait(timeout=30)


def test_the_access_token_verifies_with_pyjwt_against_the_served_jwks(keyed_server):
    alg, url, private_set = keyed_server
    client = SyncGoTrueClient(url=url, auto_refresh_token=False, persist_session=True)
    try:
        res = client.sign_up({"email": random_email(), "password": random_password()})
        token = res.session.access_token
        header = jwt.get_unverified_header(token)
        assert header["alg"] == alg
        assert header["kid"] == private_set[0]["kid"]

        jwks = json.loads(urllib.request.urlopen(f"{url}/.well-known/jwks.json").read())
        assert all("d" not in k for k in jwks["keys"]), "no private member is published"
        key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
        claims = jwt.decode(token, key=key.key, algorithms=[alg], audience="authenticated")
        assert claims["sub"] == res.user.id
        assert claims["role"] == "authenticated"

        # A token whose payload was changed does not verify, with PyJWT or with the server.
        h, _, s = token.split(".")
        forged_payload = jwt.utils.base64url_encode(json.dumps({**claims, "role": "service_role"}).encode()).decode()
        forged = f"{h}.{forged_payload}.{s}"
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(forged, key=key.key, algorithms=[alg], audience="authenticated")
        req = urllib.request.Request(f"{url}/user", headers={"Authorization": f"Bearer {forged}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req)
        assert refused.value.code == 403

        # A refreshed token is signed the same way.
        refreshed = client.refresh_session()
        assert jwt.get_unverified_header(refreshed.session.access_token)["alg"] == alg
        jwt.decode(refreshed.session.access_token, key=key.key, algorithms=[alg], audience="authenticated")
    finally:
        client.close()
