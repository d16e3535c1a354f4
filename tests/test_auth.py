"""Credential parsing, password hashing and end-user token verification (no HTTP)."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifier.auth import Authenticator, Credentials, parse_authorization
from notifier.passwords import hash_password, verify_password
from notifier.errors import Unauthenticated
from notifier.keys import Keys
from notifier.settings import Settings


def test_parse_the_four_forms():
    assert parse_authorization("Basic cm9vdDpwYTpzcw==") == Credentials("basic", "root", "pa:ss")
    assert parse_authorization("bearer abc.def.ghi") == Credentials("bearer", secret="abc.def.ghi")
    assert parse_authorization("shop s3cret with space") == Credentials("app", "shop", "s3cret with space")
    assert parse_authorization("abc.def.ghi") == Credentials("token", secret="abc.def.ghi")


@pytest.mark.parametrize("header", ["", "   ", "Basic", "Basic ***", "Bearer "])
def test_malformed_headers(header):
    with pytest.raises(Unauthenticated):
        parse_authorization(header)


def test_password_hash_is_salted_scrypt_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)
    assert not verify_password("x", "plaintext-password")


def _pem_pair(private_key):
    public = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_key, public


def _authenticator(**settings) -> Authenticator:
    base = Settings.from_env({}, secret_key="k")
    return Authenticator(store=None, settings=base.replace(**settings), keys=Keys.from_root("k", base))


NEW_KEY = {"RS256": lambda: rsa.generate_private_key(65537, 2048),
           "ES256": lambda: ec.generate_private_key(ec.SECP256R1())}


@pytest.mark.parametrize("algorithm", NEW_KEY)
def test_asymmetric_user_tokens(algorithm):
    private, public = _pem_pair(NEW_KEY[algorithm]())
    auth = _authenticator(user_jwt_algorithms=(algorithm,), user_jwt_public_key=public)
    token = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, private, algorithm=algorithm)
    assert auth.verify_user_token(token).id == "ann"
    other = NEW_KEY[algorithm]()
    forged = jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, other, algorithm=algorithm)
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        auth.verify_user_token(forged)


def test_public_key_cannot_be_used_as_an_hmac_secret():
    """The classic algorithm-confusion attack: HS256 signed with the public key PEM as the secret."""
    private, public = _pem_pair(rsa.generate_private_key(65537, 2048))
    auth = _authenticator(user_jwt_algorithms=("RS256",), user_jwt_public_key=public)
    import hashlib, hmac, base64, json
    segments = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
                for part in ({"alg": "HS256", "typ": "JWT"}, {"sub": "ann", "exp": int(time.time()) + 60})]
    signing_input = b".".join(segments)
    signature = base64.urlsafe_b64encode(hmac.new(public.encode(), signing_input, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(Unauthenticated, match="'HS256' is not accepted"):
        auth.verify_user_token((signing_input + b"." + signature).decode())


def test_issuer_audience_and_custom_claim():
    auth = _authenticator(user_jwt_issuer="https://auth.example", user_jwt_audience="notifier",
                          user_id_claim="uid")
    secret = auth.keys.user_jwt
    good = {"uid": 42, "iss": "https://auth.example", "aud": "notifier", "exp": int(time.time()) + 60}
    assert auth.verify_user_token(jwt.encode(good, secret, algorithm="HS256")).id == "42"
    for change, message in (({"iss": "https://evil.example"}, "(?i)issuer"), ({"aud": "other"}, "(?i)audience"),
                            ({"uid": ""}, "no 'uid' claim")):
        with pytest.raises(Unauthenticated, match=message):
            auth.verify_user_token(jwt.encode({**good, **change}, secret, algorithm="HS256"))


def test_issued_user_token_verifies():
    auth = _authenticator()
    assert auth.verify_user_token(auth.issue_user_token("ann")).id == "ann"
