"""The SSRF guard: which addresses it refuses (decided without connecting anywhere), the
allow-list, and requests that go to the checked address, redirects checked again."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runs.tasktypes import netguard

__all__ = ["LocalServer", "local_server"]


# --- a real server on 127.0.0.1 ----------------------------------------------------------------


class LocalServer(ThreadingHTTPServer):
    """Answers by path: /json, /echo, /status/<code>, /slow?seconds=, /flaky (500, then
    200), /redirect?to=<url>&code=<status>, /loop, /huge. Records every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.flaky_calls = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout tests) breaks the pipe: expected

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.seen.append(
            {
                "method": self.command,
                "path": parts.path,
                "query": query,
                "headers": dict(self.headers.items()),
                "body": body,
            }
        )
        path = parts.path
        if path == "/json":
            self._json(200, {"ok": True, "state": query.get("state", "done")})
        elif path == "/echo":
            self._json(200, {"method": self.command, "query": query, "body": body.decode()})
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._json(code, {"error": f"status {code}"})
        elif path == "/slow":
            time.sleep(float(query.get("seconds", "3")))
            self._json(200, {"slow": True})
        elif path == "/flaky":
            self.server.flaky_calls += 1
            self._json(500 if self.server.flaky_calls == 1 else 200, {"n": self.server.flaky_calls})
        elif path == "/redirect":
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/huge":
            self._send(200, b"x" * 1_000_000, "text/plain")
        elif path == "/text":
            self._send(200, b"plain words", "text/plain")
        else:
            self._json(404, {"error": "no such path"})

    do_GET = do_POST = do_PUT = do_HEAD = _handle


def serve(server: ThreadingHTTPServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    yield from serve(LocalServer())


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address a connection is opened to, from now on (the real connect still runs)."""
    opened: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def recording(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", recording)
    return opened


def stub_resolver(answers: dict[str, list[str]]) -> Callable[[str, int], Sequence[str]]:
    """A resolver that knows only `answers` and counts its lookups."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        if host not in answers:
            raise OSError(f"{host} is not in the test's stub resolver")
        return answers[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} should not have been looked up")


# --- the decision (no connection) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://2130706433/", "(127.0.0.1) is a loopback"),
        ("http://0x7f.0.0.1/", "(127.0.0.1) is a loopback"),
        ("http://0177.0.0.1/", "(127.0.0.1) is a loopback"),
        ("http://127.1/", "(127.0.0.1) is a loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://[::1]:8080/", "loopback"),
        ("http://10.1.2.3/", "private address (10.0.0.0/8)"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "unique local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[64:ff9b::a00:5]/", "embedding 10.0.0.5"),
        ("http://[2002:7f00:1::1]/", "embedding 127.0.0.1"),
    ],
)
def test_it_blocks_addresses_that_are_not_public(url: str, words: str) -> None:
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check(url, [], resolver=no_dns)
    assert words in str(caught.value)


def test_it_says_how_to_allow_a_blocked_address() -> None:
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check("http://10.1.2.3/", [], resolver=no_dns)
    assert "HTTP_ALLOWED_HOSTS" in str(caught.value)
    assert "http_allowed_hosts" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/", "//x/", "x"]
)
def test_it_blocks_other_schemes(url: str) -> None:
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check(url, ["127.0.0.1"], resolver=no_dns)
    assert "only http:// and https://" in str(caught.value)


def test_it_refuses_credentials_in_the_url_without_repeating_them() -> None:
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check("http://user:s3cret@example.com/", [], resolver=no_dns)
    assert "connection" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_it_blocks_a_name_that_resolves_to_a_private_address() -> None:
    resolve = stub_resolver({"internal.test": ["10.0.0.5"]})
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check("https://internal.test/api", [], resolver=resolve)
    assert "internal.test (10.0.0.5) is a private address (10.0.0.0/8)" in str(caught.value)


def test_it_checks_every_address_a_name_resolves_to() -> None:
    resolve = stub_resolver({"mixed.test": ["93.184.216.34", "::ffff:127.0.0.1"]})
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check("http://mixed.test/", [], resolver=resolve)
    assert "127.0.0.1" in str(caught.value)


def test_it_passes_public_addresses() -> None:
    resolve = stub_resolver({"api.test": ["93.184.216.34", "2606:2800:220:1::1"]})
    assert netguard.check("https://api.test/v1", [], resolver=resolve) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    ]
    assert netguard.check("http://[64:ff9b::808:808]/", [], resolver=no_dns) == [
        ipaddress.ip_address("64:ff9b::808:808")
    ]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000/", ["127.0.0.1"]),
        ("http://2130706433/", ["127.0.0.1"]),  # the same address, another spelling
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.0/8"]),
        ("http://internal.test/", ["10.0.0.0/8"]),
        ("http://internal.test/", ["INTERNAL.test"]),
        ("http://internal.test/", ["*.test"]),
        ("http://[::1]/", ["[::1]"]),
        ("http://169.254.169.254/", ["169.254.169.254"]),
    ],
)
def test_it_allows_what_the_allow_list_names(url: str, allowed: list[str]) -> None:
    resolve = stub_resolver({"internal.test": ["10.0.0.5"]})
    assert netguard.check(url, allowed, resolver=resolve)


@pytest.mark.parametrize(
    "allowed", [["169.254.0.0/16"], ["metadata.test"], ["*.test"], ["10.0.0.5"]]
)
def test_it_unblocks_metadata_only_by_its_exact_address(allowed: list[str]) -> None:
    resolve = stub_resolver({"metadata.test": ["169.254.169.254"]})
    with pytest.raises(netguard.Blocked) as caught:
        netguard.check("http://metadata.test/", allowed, resolver=resolve)
    assert "cloud metadata" in str(caught.value)


def test_it_does_not_take_a_wildcard_for_its_apex_or_a_lookalike() -> None:
    resolve = stub_resolver({"corp.test": ["10.0.0.5"], "evilcorp.test": ["10.0.0.6"]})
    for url in ("http://corp.test/", "http://evilcorp.test/"):
        with pytest.raises(netguard.Blocked):
            netguard.check(url, ["*.corp.test"], resolver=resolve)


def test_it_reports_a_name_that_does_not_resolve() -> None:
    with pytest.raises(netguard.RequestFailed) as caught:
        netguard.check("http://nowhere.test/", [], resolver=stub_resolver({}))
    assert "could not resolve the host 'nowhere.test'" in str(caught.value)
    assert not caught.value.permanent


# --- requests ----------------------------------------------------------------------------------


def fetch(url: str, **kwargs: Any) -> netguard.Response:
    options: dict[str, Any] = {"timeout": 5, "max_bytes": 100_000, "allowed": ["127.0.0.1"]}
    return netguard.request(kwargs.pop("method", "GET"), url, **{**options, **kwargs})


def test_it_refuses_the_loopback_server_without_the_allow_list(
    local_server: LocalServer, connections: list[tuple[str, int]]
) -> None:
    with pytest.raises(netguard.Blocked):
        fetch(local_server.url("/json"), allowed=[])
    assert connections == []
    assert local_server.seen == []


def test_it_connects_to_the_checked_address_with_the_original_host(
    local_server: LocalServer, connections: list[tuple[str, int]]
) -> None:
    resolve = stub_resolver({"api.test": ["127.0.0.1"]})
    url = f"http://api.test:{local_server.port}/json?state=x"
    response = fetch(url, allowed=["api.test"], resolver=resolve)
    assert response.status == 200
    assert json.loads(response.body) == {"ok": True, "state": "x"}
    assert response.headers["content-type"] == "application/json"
    assert resolve.calls == ["api.test"]  # type: ignore[attr-defined]
    assert connections == [("127.0.0.1", local_server.port)]
    assert local_server.seen[0]["headers"]["Host"] == f"api.test:{local_server.port}"


def test_it_adds_params_to_the_query(local_server: LocalServer) -> None:
    response = fetch(local_server.url("/echo?a=1"), params={"b": "two words"})
    assert json.loads(response.body)["query"] == {"a": "1", "b": "two words"}


def test_it_follows_redirects_checking_each(local_server: LocalServer) -> None:
    response = fetch(local_server.url("/redirect?to=/json"))
    assert response.status == 200
    assert response.redirects == 1
    assert response.url == local_server.url("/json")
    assert [s["path"] for s in local_server.seen] == ["/redirect", "/json"]


def test_it_refuses_a_redirect_to_a_blocked_address_without_connecting(
    local_server: LocalServer, connections: list[tuple[str, int]]
) -> None:
    for target in ("http://10.255.255.1/admin", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(netguard.Blocked) as caught:
            fetch(local_server.url(f"/redirect?to={target}"))
        assert str(urlsplit(target).hostname) in str(caught.value)
    assert {host for host, _ in connections} == {"127.0.0.1"}
    assert len(connections) == 2


def test_it_refuses_a_redirect_to_another_scheme(local_server: LocalServer) -> None:
    with pytest.raises(netguard.Blocked) as caught:
        fetch(local_server.url("/redirect?to=file:///etc/passwd"))
    assert "file://" in str(caught.value)


def test_it_turns_a_post_into_a_get_on_303_and_keeps_it_on_307(local_server: LocalServer) -> None:
    for code, method, body in (("303", "GET", ""), ("307", "POST", "payload")):
        local_server.seen.clear()
        response = fetch(
            local_server.url(f"/redirect?to=/echo&code={code}"),
            method="POST",
            body=b"payload",
            headers={"Content-Type": "text/plain"},
        )
        assert json.loads(response.body) == {"method": method, "query": {}, "body": body}
        if method == "GET":
            assert "Content-Type" not in local_server.seen[1]["headers"]


def test_it_does_not_hand_credentials_to_another_host(local_server: LocalServer) -> None:
    resolve = stub_resolver({"other.test": ["127.0.0.1"]})
    elsewhere = f"http://other.test:{local_server.port}/json"
    fetch(
        local_server.url(f"/redirect?to={elsewhere}"),
        headers={"Authorization": "Bearer t0ken", "X-Api-Key": "k3y", "Accept": "text/plain"},
        allowed=["127.0.0.1", "other.test"],
        resolver=resolve,
    )
    first, second = local_server.seen
    assert first["headers"]["Authorization"] == "Bearer t0ken"
    assert first["headers"]["X-Api-Key"] == "k3y"
    # Any custom header may hold a credential: only harmless ones go to another host.
    assert "Authorization" not in second["headers"]
    assert "X-Api-Key" not in second["headers"]
    assert second["headers"]["Accept"] == "text/plain"


def test_it_refuses_a_header_with_a_line_break_without_repeating_it(
    local_server: LocalServer,
) -> None:
    with pytest.raises(netguard.RequestFailed) as caught:
        fetch(local_server.url("/json"), headers={"Authorization": "Bearer s3cret\r\nX-Evil: 1"})
    assert "line break" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.permanent
    assert local_server.seen == []


def test_it_sends_only_the_checked_host(local_server: LocalServer) -> None:
    fetch(local_server.url("/json"), headers={"host": "metadata.google.internal"})
    assert local_server.seen[0]["headers"]["Host"] == f"127.0.0.1:{local_server.port}"


def test_it_stops_after_too_many_redirects(local_server: LocalServer) -> None:
    with pytest.raises(netguard.RequestFailed) as caught:
        fetch(local_server.url("/loop"), max_redirects=3)
    assert "more than 3 redirects" in str(caught.value)
    assert caught.value.permanent
    assert len(local_server.seen) == 4


def test_it_keeps_at_most_max_bytes_of_the_body(local_server: LocalServer) -> None:
    response = fetch(local_server.url("/huge"), max_bytes=1000)
    assert response.truncated
    assert response.body == b"x" * 1000
    whole = fetch(local_server.url("/text"), max_bytes=1000)
    assert (whole.body, whole.truncated) == (b"plain words", False)


def test_it_times_out(local_server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(netguard.RequestFailed) as caught:
        fetch(local_server.url("/slow?seconds=3"), timeout=0.5)
    assert "timed out" in str(caught.value)
    assert time.monotonic() - started < 2


def test_it_stops_when_asked(local_server: LocalServer) -> None:
    started = time.monotonic()
    with pytest.raises(netguard.Stopped):
        fetch(
            local_server.url("/slow?seconds=3"),
            should_stop=lambda: time.monotonic() - started > 0.3,
        )
    assert time.monotonic() - started < 1.5


def test_it_reports_a_refused_connection() -> None:
    server = LocalServer()
    port = server.port
    server.server_close()  # nothing listens there any more
    with pytest.raises(netguard.RequestFailed) as caught:
        fetch(f"http://127.0.0.1:{port}/")
    assert f"could not connect to http://127.0.0.1:{port}" in str(caught.value)
    assert "refused" in str(caught.value).lower()
    assert not caught.value.permanent


# --- https: TLS to the checked address, verified against the URL's host name ---------------------


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its own CA): (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalServer, Path]]:
    """A LocalServer speaking TLS with a certificate for api.test (and its CA file)."""
    cert_file, key_file = _certificate(tmp_path, "api.test")
    server = LocalServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serve(server):
        yield running, cert_file


def test_it_verifies_tls_against_the_url_host(tls_server: tuple[LocalServer, Path]) -> None:
    server, ca = tls_server
    resolve = stub_resolver({"api.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]})
    response = fetch(
        f"https://api.test:{server.port}/json",
        allowed=["127.0.0.1"],
        resolver=resolve,
        ca_certs=str(ca),
    )
    assert response.status == 200
    assert server.seen[0]["headers"]["Host"] == f"api.test:{server.port}"
    with pytest.raises(netguard.RequestFailed) as caught:
        fetch(
            f"https://wrong.test:{server.port}/json",
            allowed=["127.0.0.1"],
            resolver=resolve,
            ca_certs=str(ca),
        )
    assert "TLS failed" in str(caught.value)
    assert caught.value.permanent


def test_it_blocks_a_metadata_address_with_an_ipv6_zone_even_when_its_network_is_allowed() -> None:
    with pytest.raises(netguard.Blocked, match="metadata"):
        netguard.check("http://[fd00:ec2::254%25eth0]/latest", ["fd00::/8"])
