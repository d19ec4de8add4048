"""API token format `orc_<prefix>_<secret>`: generation, parsing and hashing (no database)."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

__all__ = ["generate", "hash_token", "parse"]

PREFIX_LEN = 10
_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN_RE = re.compile(rf"^orc_([a-z0-9]{{{PREFIX_LEN}}})_([A-Za-z0-9_-]{{32,128}})$")


def generate() -> tuple[str, str]:
    """Return (prefix, full token). The secret carries 256 bits of randomness."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN))
    return prefix, f"orc_{prefix}_{secrets.token_urlsafe(32)}"


def parse(raw: str) -> str | None:
    """The prefix of a well-formed token, else None."""
    match = _TOKEN_RE.match(raw)
    return match.group(1) if match else None


def hash_token(raw: str) -> str:
    # The secret is random and long, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()
