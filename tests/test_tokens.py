"""End-user token verification (no HTTP)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifier.errors import Unauthenticated
from notifier.keys import Keys
from notifier.settings import Settings
from notifier.tokens import UserTokens


def _pem_pair(private_key):
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_key, public


def _user_tokens(**settings) -> UserTokens:
    base = Settings.from_env({}, secret_key="k")
    return UserTokens(base.replace(**settings), Keys.from_root("k", base))


NEW_KEY = {
    "RS256": lambda: rsa.generate_private_key(65537, 2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
}


@pytest.mark.parametrize("algorithm", NEW_KEY)
def test_asymmetric_user_tokens(algorithm):
    private, public = _pem_pair(NEW_KEY[algorithm]())
    tokens = _user_tokens(user_jwt_algorithms=(algorithm,), user_jwt_public_key=public)
    token = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, private, algorithm=algorithm)
    assert tokens.verify(token).id == "ann"
    other = NEW_KEY[algorithm]()
    forged = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, other, algorithm=algorithm)
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        tokens.verify(forged)


def test_public_key_cannot_be_used_as_an_hmac_secret():
    """The classic algorithm-confusion attack: HS256 signed with the public key PEM as the secret."""
    private, public = _pem_pair(rsa.generate_private_key(65537, 2048))
    tokens = _user_tokens(user_jwt_algorithms=("RS256",), user_jwt_public_key=public)
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT"}, {"sub": "ann", "exp": int(time.time()) + 60})
    ]
    signing_input = b".".join(segments)
    signature = base64.urlsafe_b64encode(hmac.new(public.encode(), signing_input, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(Unauthenticated, match="'HS256' is not accepted"):
        tokens.verify((signing_input + b"." + signature).decode())


def test_issuer_audience_and_custom_claim():
    tokens = _user_tokens(user_jwt_issuer="https://auth.example", user_jwt_audience="notifier", user_id_claim="uid")
    secret = tokens.keys.user_jwt
    good = {"uid": 42, "iss": "https://auth.example", "aud": "notifier", "exp": int(time.time()) + 60}
    assert tokens.verify(jwt.encode(good, secret, algorithm="HS256")).id == "42"
    for change, message in (
        ({"iss": "https://evil.example"}, "(?i)issuer"),
        ({"aud": "other"}, "(?i)audience"),
        ({"uid": ""}, "no 'uid' claim"),
    ):
        with pytest.raises(Unauthenticated, match=message):
            tokens.verify(jwt.encode({**good, **change}, secret, algorithm="HS256"))


def test_issued_user_token_verifies():
    tokens = _user_tokens()
    assert tokens.verify(tokens.issue("ann")).id == "ann"
