"""Small statistics and the HTTP client the benchmarks use (standard library only)."""

from __future__ import annotations

import http.client
import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Client", "Figure", "Figures", "percentile"]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Figure:
    """One reported figure: its value in each repetition, summarised by the median."""

    name: str
    unit: str
    values: list[float]
    better: str  # "lower" or "higher"
    target: float | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": round(self.median, 3),
            "min": round(min(self.values), 3),
            "max": round(max(self.values), 3),
            "runs": [round(v, 3) for v in self.values],
            "better": self.better,
            "target": self.target,
            "meets_target": self.meets_target(),
            "note": self.note,
        }

    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.median <= self.target if self.better == "lower" else self.median >= self.target


class Figures(list[Figure]):
    """The figures made of the repetitions' `values` (key -> one value per repetition):
    `add` one when its key was measured, `median` of a key (None when it was not)."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        super().__init__()
        self.values = values

    def median(self, key: str) -> float | None:
        return statistics.median(self.values[key]) if key in self.values else None

    def add(self, key: str, name: str, unit: str, better: str, **kw: Any) -> None:
        if key in self.values:
            self.append(Figure(name, unit, self.values[key], better, **kw))


class Client:
    """One keep-alive HTTP connection (one per thread), JSON in and out."""

    def __init__(self, base: str, token: str | None = None, *, cookie: str | None = None) -> None:
        parts = urlsplit(base)
        assert parts.hostname in {"127.0.0.1", "localhost", "::1"}, "benchmarks stay local"
        self.prefix = parts.path.rstrip("/")
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if cookie:  # a signed-in browser's session (the portal's pages)
            self.headers["Cookie"] = cookie

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """(status, JSON body, seconds the call took)."""
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        self.connection.request(method, self.prefix + path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - started
        return response.status, json.loads(payload) if payload else None, elapsed

    def page(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """GET a page: (status, body, seconds the call took)."""
        started = time.perf_counter()
        self.connection.request("GET", self.prefix + path, headers=self.headers | (headers or {}))
        response = self.connection.getresponse()
        payload = response.read()
        return response.status, payload, time.perf_counter() - started

    def close(self) -> None:
        self.connection.close()
