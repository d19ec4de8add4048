"""The sales API that `make demo`'s ETL example calls: a small HTTP server the demo runs
itself on 127.0.0.1, so the example works without the internet. It answers only with the
demo's API key (a tenant secret), which the example sends as `{{ secrets.sales_api_key }}`."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["SalesApi"]


class SalesApi:
    """`GET /status` -> {"ready": true}; `GET /sales?day=D&region=R` -> that day's total
    (derived from the day and region, so reruns agree), with header X-Api-Key."""

    def __init__(self, api_key: str, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = api.answer(self.path, self.headers.get("X-Api-Key", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints the run, not the API's access log

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, key: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(path)
        if url.path == "/status":
            return 200, {"ready": True}
        if url.path != "/sales":
            return 404, {"error": f"no such endpoint {url.path}; try /status or /sales"}
        if not hmac.compare_digest(key, self.api_key):
            return 401, {"error": "missing or wrong X-Api-Key"}
        query = parse_qs(url.query)
        day, region = query.get("day", [""])[0], query.get("region", ["eu"])[0]
        if not day:
            return 400, {"error": "day is required, e.g. ?day=2026-01-31"}
        seed = int(hashlib.sha256(f"{day}/{region}".encode()).hexdigest()[:8], 16)
        return 200, {"day": day, "region": region, "total": round(1000 + seed % 9000 / 7, 2)}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
