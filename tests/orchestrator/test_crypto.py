from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from orchestrator import crypto


def test_it_round_trips_and_never_stores_the_plaintext() -> None:
    key = Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[key]):
        token = crypto.encrypt("hunter2")
        assert "hunter2" not in token
        assert crypto.decrypt(token) == "hunter2"


def test_it_rotates_to_the_newest_key_and_still_reads_old_values() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[old]):
        token = crypto.encrypt("s3cret")
    with override_settings(ENCRYPTION_KEYS=[new, old]):
        assert crypto.decrypt(token) == "s3cret"
        rotated = crypto.rotate(token)
    with override_settings(ENCRYPTION_KEYS=[new]):
        assert crypto.decrypt(rotated) == "s3cret"
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(token)


def test_it_names_a_bad_key_by_position() -> None:
    keys = [Fernet.generate_key().decode(), "not-a-key"]
    with (
        override_settings(ENCRYPTION_KEYS=keys),
        pytest.raises(ImproperlyConfigured, match=r"ENCRYPTION_KEYS\[1\]"),
    ):
        crypto.encrypt("x")
