"""Masking secret values wherever an attempt could record them: its log, result, rendered
task and error. A value is masked raw and in the encodings a task most often applies to
it by accident or on purpose: URL-encoded (quote, quote_plus) and base64 (standard and
URL-safe, alone or inside a longer base64 text such as an HTTP Basic header). No Django."""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "MIN_MASKED_LENGTH", "Masker"]

MASK = "***"
# Shorter values are not masked: masking "1" or "yes" would shred every log, and a
# secret that short protects nothing anyway.
MIN_MASKED_LENGTH = 4


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 text that `raw` produces wherever it sits in a longer value: for each of
    the three byte alignments, the characters that depend on `raw` alone."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        first = -(-8 * offset // 6)  # the first character made of `raw` bits only
        last = (8 * (offset + len(raw))) // 6  # one past the last such character
        core = encoded[first:last]
        if len(core) >= MIN_MASKED_LENGTH:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def variants(value: str) -> set[str]:
    """Every form of `value` that gets masked."""
    if len(value) < MIN_MASKED_LENGTH:
        return set()
    raw = value.encode()
    forms = {value, quote(value), quote(value, safe=""), quote_plus(value)}
    # As it appears inside JSON text (a logged payload): escaped, ASCII-only or not.
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    # The whole encoding (padding included) first, then what survives inside longer text.
    forms |= {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    forms |= _base64_cores(raw)
    return {f for f in forms if len(f) >= MIN_MASKED_LENGTH}


class Masker:
    """The secret values one attempt has used; `mask*` replace each of their forms with
    MASK. Values are added while the attempt runs (a connection resolved late), so it is
    thread-safe and recompiles its pattern on change."""

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._bytes_pattern: re.Pattern[bytes] | None = None
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        forms = variants(value or "")
        with self._lock:
            if forms - self._forms:
                self._forms |= forms
                # Longest first: a value that contains another is masked whole.
                ordered = sorted(self._forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
                self._bytes_pattern = re.compile(b"|".join(re.escape(f.encode()) for f in ordered))

    @property
    def longest(self) -> int:
        """The length in bytes of the longest form (what a chunk boundary may split)."""
        return max((len(f.encode()) for f in self._forms), default=0)

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def mask_bytes(self, data: bytes) -> bytes:
        pattern = self._bytes_pattern
        return pattern.sub(MASK.encode(), data) if pattern is not None and data else data

    def safe_cut(self, data: bytes, cut: int) -> int:
        """`cut`, moved back to the start of a value it would split (masking each side
        apart would let both halves through)."""
        pattern = self._bytes_pattern
        if pattern is None or cut >= len(data):
            return cut
        for match in pattern.finditer(data):
            if match.start() < cut < match.end():
                return match.start()
            if match.start() >= cut:
                break
        return cut

    def mask_json(self, value: Any) -> Any:
        """A JSON-like value with every string (keys included) masked, and every number
        that is a secret value (a PIN printed as JSON parses back to a number)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return MASK if str(value) in self._forms else value
        if isinstance(value, list):
            return [self.mask_json(v) for v in value]
        if isinstance(value, dict):
            return {self.mask(str(k)): self.mask_json(v) for k, v in value.items()}
        return value
