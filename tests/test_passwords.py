"""Password hashing (no HTTP; the guard over HTTP is tests/security/test_passwords.py)."""

from __future__ import annotations

from notifier.passwords import hash_password, verify_password


def test_password_hash_is_salted_scrypt_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)
    assert not verify_password("x", "plaintext-password")
