"""Passwords: hashing, the strength policy, and the one guard every password check goes through.

The guard (PasswordGuard) serves every form that carries a password: admin HTTP Basic, the admin token
endpoint, the admin login page and a client's `<login> <password>`. For each attempt it
- reserves the attempt on its counters before any work, so concurrent guesses cannot all slip in before
  the first failure is recorded: the account from this address (the lockout), the address (one source
  guessing many logins; an IPv6 address counts as its /64) and the account from every address together (a
  higher ceiling against guessing from many addresses, which holds only for addresses that already sent a
  wrong password for that account). So a stranger's wrong passwords, from however many addresses, never
  lock a client application out of its own integration;
- runs scrypt exactly once, against the account's hash or a dummy one, so an unknown login costs what a
  known one does;
- runs scrypt in a bounded thread pool, off the event loop; when the pool and its queue are full the
  attempt is refused at once (429) rather than piling up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from .errors import Invalid, TooManyAttempts

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def generate_password() -> str:
    return secrets.token_urlsafe(24)


# What an attempt on an unknown or inactive account is checked against: the same cost as a real one.
DUMMY_HASH = hash_password(secrets.token_hex(8))


# --- the policy for admin passwords ----------------------------------------------------------------

MIN_PASSWORD = 12
MIN_GUESS_SCORE = 3  # zxcvbn's 0-4 scale: below 3 falls within about 10^8 guesses
# Words an attacker of this service tries first, on top of zxcvbn's own lists.
SERVICE_WORDS = (
    "notifier",
    "admin",
    "administrator",
    "root",
    "changeme",
    "change-me",
    "welcome",
    "password",
    "letmein",
)


def check_strength(password: str, username: str = "") -> None:
    """12 characters or more, not a common password, not easy to derive from one (or from the username).

    zxcvbn's guess estimate is built on its list of the 30,000 most common passwords (and on common words,
    keyboard walks, repeats and dates): an exact match, "passwordpassword", "qwertyuiop12", "Welcome2024!"
    or "admin@123456" (with the service's own words) all score below 3."""
    from zxcvbn import zxcvbn
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    if len(password) < MIN_PASSWORD:
        raise Invalid.field("password", f"must be at least {MIN_PASSWORD} characters")
    if (
        password.lower() in _common_passwords(FREQUENCY_LISTS)
        or zxcvbn(password[:100], user_inputs=[*SERVICE_WORDS, *([username] if username else [])])["score"]
        < MIN_GUESS_SCORE
    ):
        raise Invalid.field("password", "is too common or too easy to guess; choose another")


_COMMON: frozenset[str] | None = None


def _common_passwords(lists) -> frozenset[str]:
    global _COMMON
    if _COMMON is None:
        _COMMON = frozenset(lists["passwords"])
    return _COMMON


# --- scrypt off the event loop ---------------------------------------------------------------------


def _yield_to_the_event_loop() -> None:
    """Run this scrypt thread at a lower CPU priority (Linux: a thread has its own nice value), so that
    a storm of password checks slows other password checks, not every request."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux: the pool is still bounded
        pass


class KdfPool:
    """A few threads for scrypt (it releases the GIL) and a bounded number of attempts waiting for them.

    An attempt takes its place (`admit`) before anything else is done for it, so an overloaded server
    refuses the surplus at once, without a database call."""

    def __init__(self, workers: int, queue: int):
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kdf", initializer=_yield_to_the_event_loop
        )
        self._capacity = workers + queue
        self._admitted = 0  # changed only on the event loop

    @contextlib.contextmanager
    def admit(self):
        if self._admitted >= self._capacity:
            raise TooManyAttempts("Too many password checks at once; retry in a moment", retry_after=1)
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def verify(self, password: str, encoded: str) -> bool:
        """Only within `admit()`."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, verify_password, password, encoded)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- the guard -------------------------------------------------------------------------------------


class Reservation(Protocol):
    counts: dict[str, int]
    retry_after: int


class AttemptCounters(Protocol):
    """Shared counters of password attempts (notifier.services.attempts.AttemptStore)."""

    def reserve(self, keys: list[str]) -> Awaitable[Reservation]: ...

    def succeeded(self, reservation: Reservation, reset: str, release: list[str]) -> Awaitable[None]: ...


# A refused attempt is answered after this long. The wait costs the server nothing, and it keeps a client
# that retries at once (a guessing script on many connections) from turning refusals into a busy loop.
REFUSAL_DELAY = 1.0


@dataclass(frozen=True)
class Limits:
    per_account: int  # from one address
    per_address: int
    per_account_total: int  # from every address together


class _VerifiedPasswords:
    """Recently verified (login, password) pairs, so an app sending its password on every request does
    not pay for scrypt every time. An entry holds the stored hash it was checked against: a password
    change or reset invalidates it at once. Only right passwords get in, so a wrong one never skips
    the counters."""

    def __init__(self, key: bytes, size: int = 10000, ttl: float = 300.0):
        self._key, self._size, self._ttl = key, size, ttl
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def fingerprint(self, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{login}\0{password}".encode(), hashlib.sha256).digest()

    def hit(self, fingerprint: bytes, stored_hash: str) -> bool:
        entry = self._entries.get(fingerprint)
        return bool(entry and entry[0] == stored_hash and entry[1] > time.monotonic())

    def remember(self, fingerprint: bytes, stored_hash: str) -> None:
        self._entries[fingerprint] = (stored_hash, time.monotonic() + self._ttl)
        self._entries.move_to_end(fingerprint)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _network(address: str) -> str:
    """What one source of attempts is: an IPv4 address, or an IPv6 address's /64 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class PasswordGuard:
    """The one place a password is checked (see the module docstring)."""

    def __init__(
        self,
        counters: AttemptCounters,
        kdf: KdfPool,
        limits: Limits,
        cache_key: bytes,
        refusal_delay: float = REFUSAL_DELAY,
    ):
        self.refusal_delay = refusal_delay
        self.counters = counters
        self.kdf = kdf
        self.limits = limits
        self._verified = _VerifiedPasswords(cache_key)
        self._locked: dict[str, float] = {}  # counters this process saw over their limit, until when
        self._in_flight: dict[bytes, asyncio.Future] = {}

    async def check(self, login: str, password: str, stored_hash: str | None, address: str) -> bool:
        """True when `password` is the one of `stored_hash`; `stored_hash` None (no such account, or
        inactive) costs the same and is False. Raises TooManyAttempts past a limit or when the pool is full."""
        try:
            return await self._check(login, password, stored_hash, address)
        except TooManyAttempts:
            # Jittered, so that refusals of a storm do not come back (and return) all at once.
            await asyncio.sleep(self.refusal_delay * (0.5 + random.random()))
            raise

    async def _check(self, login: str, password: str, stored_hash: str | None, address: str) -> bool:
        source = f"address:{_network(address)}"
        account = f"account:{login}|{source}"
        fingerprint = self._verified.fingerprint(login, password)
        if stored_hash is not None and self._verified.hit(fingerprint, stored_hash):
            # A right password costs no scrypt and no counter, but a lockout this process knows of holds.
            self._refuse_if_locked(account, source)
            return True
        # The same credentials sent concurrently (an app whose cache is cold) are one attempt.
        shared_key = fingerprint + (stored_hash or "").encode() + address.encode()
        shared = self._in_flight.get(shared_key)
        if shared is None:
            shared = asyncio.ensure_future(self._attempt(login, account, source, password, stored_hash, fingerprint))
            self._in_flight[shared_key] = shared
            shared.add_done_callback(lambda _: self._in_flight.pop(shared_key, None))
        return await asyncio.shield(shared)

    async def _attempt(
        self, login: str, account: str, source: str, password: str, stored_hash: str | None, fingerprint: bytes
    ) -> bool:
        everywhere = f"account:{login}"
        self._refuse_if_locked(account, source)  # known here already: no database call for it
        with self.kdf.admit():
            reservation = await self.counters.reserve([account, source, everywhere])
            limits = [(account, self.limits.per_account), (source, self.limits.per_address)]
            if reservation.counts[account] > 1:  # this address has guessed wrong for this account before
                limits.append((everywhere, self.limits.per_account_total))
            over = [key for key, limit in limits if reservation.counts[key] > limit]
            if over:
                until = time.monotonic() + reservation.retry_after
                if len(self._locked) > 10000:
                    self._locked.clear()  # only a shortcut for cached passwords; the shared counters still hold
                for key in over:
                    if key != everywhere:  # the ceiling depends on the address's own record: not a lock
                        self._locked[key] = until
                raise self._too_many(over[0], reservation.retry_after)
            right = await self.kdf.verify(password, stored_hash or DUMMY_HASH) and stored_hash is not None
        if right and stored_hash is not None:  # (right implies it; said again for the type checker)
            # The account's count from this address starts again (only its password does that); the address's
            # keeps its failures, or one valid account of an attacker's would reset the address between
            # guesses, and so does the account's total, which guessers elsewhere add to.
            await self.counters.succeeded(reservation, reset=account, release=[source, everywhere])
            self._locked.pop(account, None)
            self._verified.remember(fingerprint, stored_hash)
        return right

    def _refuse_if_locked(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            until = self._locked.get(key)
            if until is not None:
                if until > now:
                    raise self._too_many(key, int(until - now) + 1)
                self._locked.pop(key, None)

    @staticmethod
    def _too_many(key: str, wait: int) -> TooManyAttempts:
        minutes = max(1, round(wait / 60))
        whose = "for this account" if key.startswith("account:") else "from your address"
        return TooManyAttempts(
            f"Too many failed logins {whose}; try again in {minutes} minute{'s' if minutes != 1 else ''}",
            retry_after=wait,
        )
