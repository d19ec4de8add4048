"""Encryption at rest for secret values (connections, secrets): Fernet with a rotating key
list. The first key of ENCRYPTION_KEYS encrypts; every key decrypts; `rotate` re-encrypts
a value with the first key."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DecryptionError", "active_keys", "decrypt", "encrypt", "rotate"]


class DecryptionError(Exception):
    """No configured key opens the value (wrong keys, or the value was altered)."""


def _keys() -> list[str]:
    keys: list[str] = list(settings.ENCRYPTION_KEYS)
    if keys:
        return keys
    # Development only: a key derived from SECRET_KEY (`check --deploy` warns about this).
    digest = hashlib.sha256(f"orchestrator-encryption:{settings.SECRET_KEY}".encode()).digest()
    return [base64.urlsafe_b64encode(digest).decode()]


def active_keys() -> list[str]:
    """The Fernet keys in use, newest first: ENCRYPTION_KEYS, or the one derived from
    SECRET_KEY (what another process needs to read the values this one wrote)."""
    return _keys()


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEYS[{index}] is not a Fernet key (32 url-safe base64-encoded "
                'bytes); make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"'
            ) from None
    return MultiFernet(fernets)


def _current() -> MultiFernet:
    return _fernet(tuple(_keys()))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("no configured encryption key opens this value") from None


def rotate(ciphertext: str) -> str:
    """The same value, encrypted with the newest key."""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("no configured encryption key opens this value") from None
