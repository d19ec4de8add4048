"""What the tests that start real processes share: the repository's root (their working
directory), a free port on 127.0.0.1, a clean environment, and a child that dies with the
test run."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import signal
import socket
from pathlib import Path

__all__ = ["ROOT", "die_with_parent", "free_port", "fresh_shell_env", "platform_keys"]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_shell_env(**overrides: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the test run's database or broker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(overrides)
    return env


def platform_keys() -> dict[str, str]:
    """The environment a worker, beat or web server of the suite needs to read and write
    what this test run does: its encryption and audit keys, and a SECRET_KEY (this run's,
    or one of the child's own when this run has the built-in one, which a server with
    DEBUG off refuses)."""
    from django.conf import settings

    from orchestrator import crypto

    secret = settings.SECRET_KEY
    if secret == settings.INSECURE_DEV_SECRET_KEY:
        secret = secrets.token_urlsafe(50)
    return {
        "SECRET_KEY": secret,
        "ENCRYPTION_KEYS": ",".join(crypto.active_keys()),
        "AUDIT_HMAC_KEY": settings.AUDIT_HMAC_KEY,
    }


def die_with_parent() -> None:
    """Linux: SIGTERM this process when the test run dies, so no worker outlives it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
