"""Password hashing (no HTTP; the guard over HTTP is tests/security/test_passwords.py)."""

from __future__ import annotations

from notifier.passwords import hash_password, verify_password

from .conftest import PRODUCTION_SCRYPT_N


def test_password_hash_is_salted_scrypt_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)
    assert not verify_password("x", "plaintext-password")


def test_production_cost_is_scrypt_n_2_to_the_14():
    """The tests hash cheaper (tests/conftest.py); the service itself keeps its cost."""
    assert PRODUCTION_SCRYPT_N == 2**14
