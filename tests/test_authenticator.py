"""Reading the Authorization header (no HTTP, no database)."""

from __future__ import annotations

import pytest

from notifier.authenticator import Credentials, Scheme, parse_authorization
from notifier.errors import Unauthenticated


def test_parse_the_four_forms():
    assert parse_authorization("Basic cm9vdDpwYTpzcw==") == Credentials(Scheme.BASIC, "root", "pa:ss")
    assert parse_authorization("bearer abc.def.ghi") == Credentials(Scheme.BEARER, secret="abc.def.ghi")
    assert parse_authorization("shop s3cret with space") == Credentials(Scheme.APP, "shop", "s3cret with space")
    assert parse_authorization("abc.def.ghi") == Credentials(Scheme.TOKEN, secret="abc.def.ghi")


@pytest.mark.parametrize("header", ["", "   ", "Basic", "Basic ***", "Bearer "])
def test_malformed_headers(header):
    with pytest.raises(Unauthenticated):
        parse_authorization(header)
