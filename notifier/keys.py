"""Secret material: the root key (from SECRET_KEY or generated once into the database) and keys derived from it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .settings import Settings
from .store import Store


@dataclass(frozen=True)
class Keys:
    root: bytes
    admin_jwt: str
    user_jwt: str
    webhook: bytes

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose, so that no two uses of the root key can be confused."""
        return hmac.new(self.root, purpose.encode(), hashlib.sha256).digest()

    def sign(self, purpose: str, message: bytes) -> bytes:
        return hmac.new(self.derive(purpose), message, hashlib.sha256).digest()

    @classmethod
    def from_root(cls, root: str, settings: Settings) -> Keys:
        root_bytes = root.encode()

        def derived(purpose: str) -> str:
            return hmac.new(root_bytes, purpose.encode(), hashlib.sha256).hexdigest()

        return cls(
            root=root_bytes,
            admin_jwt=settings.admin_jwt_secret or derived("admin-jwt"),
            user_jwt=settings.user_jwt_secret or derived("user-jwt"),
            webhook=(settings.webhook_secret or derived("webhook")).encode(),
        )


async def load_keys(store: Store, settings: Settings) -> Keys:
    """Keys from SECRET_KEY, or from a root key generated on first start and shared through the database."""
    root = settings.secret_key
    if not root:
        await store.meta.update_one(
            {"_id": "secret_key"}, {"$setOnInsert": {"value": secrets.token_hex(32)}}, upsert=True
        )
        stored = await store.meta.find_one({"_id": "secret_key"})
        if stored is None:
            raise RuntimeError("the generated root key was not found in the database after it was stored")
        root = stored["value"]
    return Keys.from_root(root, settings)
