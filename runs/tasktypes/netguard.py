"""The SSRF guard: what tenant-controlled URLs may reach. A URL's host is resolved once,
every address is checked (private, loopback, link-local, metadata, ...), and the request
goes to the checked address itself, so a second DNS answer cannot point it elsewhere
(DNS rebinding). Redirects are followed here, each new URL checked again. No Django."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import BaseHTTPResponse
from urllib3.util.ssl_match_hostname import CertificateError

__all__ = [
    "Blocked",
    "IPAddress",
    "Network",
    "RequestFailed",
    "Resolver",
    "Response",
    "Stopped",
    "check",
    "check_host",
    "request",
    "safe_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
REDIRECTS = {301, 302, 303, 307, 308}
# Where an address the guard blocks can be allowed: (platform setting, tenant policy).
HTTP_ALLOW = ("HTTP_ALLOWED_HOSTS", "http_allowed_hosts")
SQL_ALLOW = ("SQL_ALLOWED_HOSTS", "sql_allowed_hosts")
# What a redirect to another host still gets: any other header may carry a credential
# (Authorization, Cookie, but also X-Api-Key and the like), so only these go on.
CROSS_ORIGIN_HEADERS = {"accept", "accept-language", "user-agent"}
CHUNK = 64 * 1024
POLL_SECONDS = 0.2

# Cloud metadata endpoints hand out credentials: only an allow-list entry naming the exact
# address unblocks one (not a host name, which DNS could point there, nor a wider network).
METADATA = {
    ipaddress.ip_address(a): name
    for a, name in (
        ("169.254.169.254", "AWS/GCP/Azure/OpenStack instance metadata"),
        ("169.254.170.2", "AWS ECS task metadata"),
        ("169.254.169.253", "AWS VPC DNS"),
        ("fd00:ec2::254", "AWS instance metadata (IPv6)"),
        ("fd00:ec2::253", "AWS VPC DNS (IPv6)"),
        ("100.100.100.200", "Alibaba Cloud metadata"),
        ("168.63.129.16", "Azure wire server"),
        ("192.0.0.192", "Oracle Cloud metadata"),
    )
}
# (network, what it is). Checked in order; the first match names the reason.
RANGES = [
    (ipaddress.ip_network(net), label)
    for net, label in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol address (Teredo, ORCHID, benchmarking)"),
        ("2001:db8::/32", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
]
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class Blocked(Exception):
    """The guard refused the URL: bad scheme or form, or an address it may not reach."""


class RequestFailed(Exception):
    """No usable answer: could not resolve or connect, timed out, broken response, too many
    redirects. `permanent` when trying again cannot help (a certificate that does not
    match, a redirect loop)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Stopped(Exception):
    """should_stop() said so (the attempt was cancelled or lost its lease)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    truncated: bool  # more than max_bytes came; the rest was dropped
    url: str  # the last URL, after redirects
    redirects: int = 0


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to send."""

    scheme: str
    host: str  # as in the URL (lower case, no brackets), for Host, SNI and certificates
    port: int
    path: str  # path and query, as sent on the request line
    addresses: list[IPAddress]

    @property
    def host_header(self) -> str:
        host = _ascii(self.host)
        host = f"[{host}]" if ":" in host else host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"


# --- the decision ------------------------------------------------------------------------


def check(url: str, allowed: Sequence[str], resolver: Resolver | None = None) -> list[IPAddress]:
    """The addresses `url` may be fetched from; raises Blocked (or RequestFailed when the
    name does not resolve). Decides only: connects nowhere."""
    return target(url, allowed, resolver).addresses


def target(url: str, allowed: Sequence[str], resolver: Resolver | None = None) -> Target:
    scheme, host, port, path = _parse(url)
    return Target(scheme, host, port, path, _addresses(host, port, allowed, resolver, HTTP_ALLOW))


def check_host(
    host: str,
    port: int,
    allowed: Sequence[str],
    resolver: Resolver | None = None,
    *,
    allow: tuple[str, str] = SQL_ALLOW,
) -> list[IPAddress]:
    """The addresses a connection to `host` (a name or an address, no URL) may go to, for
    protocols other than HTTP; raises Blocked, or RequestFailed when the name does not
    resolve. Connect to one of these addresses, not to the name again: a second DNS answer
    could point elsewhere. `allow` names where an operator allows a blocked address."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if not host:
        raise Blocked("no host given")
    return _addresses(host, port, allowed, resolver, allow)


def _addresses(
    host: str,
    port: int,
    allowed: Sequence[str],
    resolver: Resolver | None,
    allow: tuple[str, str],
) -> list[IPAddress]:
    literal = _numeric_host(host)
    resolve = resolver or _getaddrinfo
    addresses = [literal] if literal is not None else _resolve(host, port, resolve)
    host_allowed = literal is None and _host_allowed(host, allowed)
    networks = _networks(allowed)
    for address in addresses:
        _check_address(address, host, host_allowed, networks, allow)
    return addresses


def _parse(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise Blocked(f"not a valid URL ({exc}): expected http(s)://host[:port]/path") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise Blocked(
            f"the scheme {scheme + '://' if scheme else '(none)'} is not allowed: only http:// "
            "and https:// URLs can be requested"
        )
    if not parts.hostname:
        raise Blocked(f"the URL {safe_url(url)!r} has no host: expected {scheme}://host/path")
    if parts.username is not None or parts.password is not None:
        raise Blocked(
            "the URL holds credentials (user:password@host), which are not sent: put them in "
            "a connection (login and password) instead"
        )
    path = parts.path or "/"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in path + parts.query):
        raise Blocked("the URL's path or query holds spaces or control characters: encode them")
    return scheme, parts.hostname.rstrip("."), port or SCHEMES[scheme], _join(path, parts.query)


def _join(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def safe_url(url: str) -> str:
    """scheme://host[:port]/path: the URL without credentials or query (whose values may be
    API keys), for logs and messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


def _numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host means, in every form getaddrinfo accepts: 127.0.0.1,
    2130706433, 0177.0.0.1, 0x7f.0.0.1, 127.1, [::ffff:127.0.0.1]. None for a name."""
    try:
        # Without its zone (fe80::1%eth0): the zone is no part of which address it is, and
        # would make the address compare unequal to the blocked one it is.
        return _unmapped(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    values = [_number(p) for p in parts]
    *head, last = values
    # inet_aton: the last part fills the remaining bytes (127.1 = 127.0.0.1).
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    value = sum(v << (8 * (3 - i)) for i, v in enumerate(head)) + last
    return ipaddress.IPv4Address(value)


def _number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def _unmapped(address: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is a.b.c.d on the wire: check it (and connect to it) as such."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _getaddrinfo(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise RequestFailed(f"could not resolve the host {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        address = _unmapped(ipaddress.ip_address(answer.partition("%")[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RequestFailed(f"the host {host!r} resolved to no address")
    return addresses


# --- the allow-list ------------------------------------------------------------------------


def _networks(allowed: Iterable[str]) -> list[Network]:
    networks: list[Network] = []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
        except ValueError:
            continue  # a host name
    return networks


def _host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """An exact (case-insensitive) name, or *.example.com for any name below it."""
    host = host.lower()
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def _check_address(
    address: IPAddress,
    host: str,
    host_allowed: bool,
    networks: Sequence[Network],
    allow: tuple[str, str] = HTTP_ALLOW,
) -> None:
    setting, policy = allow
    if address in METADATA:
        if any(n.num_addresses == 1 and address in n for n in networks):
            return
        raise Blocked(
            f"{_named(host, address)} is a cloud metadata endpoint ({METADATA[address]}); "
            "only an allow-list entry naming this exact address unblocks it (in the platform "
            f"setting {setting} or the tenant policy {policy})"
        )
    if host_allowed or any(address in n for n in networks):
        return
    reason = _blocked_reason(address)
    if reason:
        raise Blocked(
            f"{_named(host, address)} is {reason}; to reach it, add the host name or address "
            f"to the platform setting {setting} or to the tenant policy {policy}"
        )


def _blocked_reason(address: IPAddress) -> str:
    """Why an address is not a public one ('' when it is)."""
    for network, label in RANGES:
        if address.version == network.version and address in network:
            return f"{label} ({network})"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = METADATA.get(embedded) and f"a cloud metadata endpoint ({embedded})"
            inner = inner or _blocked_reason(embedded)
            if inner:
                return f"an IPv6 address embedding {embedded}, {inner}"
            if address in NAT64:
                return ""  # NAT64 of a public address: public
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved or not address.is_global:
        return "not a public address (reserved or special-purpose)"
    return ""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64, 6to4 or IPv4-compatible address carries traffic to."""
    if address in NAT64 or address in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return address.sixtofour
    return None


def _named(host: str, address: IPAddress) -> str:
    return str(address) if host == str(address) else f"{host} ({address})"


# --- the request ---------------------------------------------------------------------------


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float,
    max_bytes: int,
    allowed: Sequence[str],
    max_redirects: int = 5,
    resolver: Resolver | None = None,
    should_stop: Callable[[], bool] | None = None,
    ca_certs: str | None = None,
) -> Response:
    """One HTTP exchange through the guard, redirects followed (each checked again).
    `timeout` covers the whole of it; at most `max_bytes` of the body are kept. Raises
    Blocked, RequestFailed or Stopped."""
    deadline = time.monotonic() + timeout
    url = _with_params(url, params or {})
    sent = dict(headers or {})
    sent.setdefault("User-Agent", "orchestrator-http-task")
    for hop in range(max_redirects + 1):
        checked = target(url, allowed, resolver)
        exchange = _Exchange(checked, method, sent, body, deadline, max_bytes, ca_certs)
        response = replace(exchange.wait(should_stop), url=url, redirects=hop)
        location = response.headers.get("location")
        if response.status not in REDIRECTS or not location:
            return response
        next_url = urljoin(url, location)
        method, body, sent = _redirected(response.status, method, body, sent, url, next_url)
        url = next_url
    raise RequestFailed(
        f"more than {max_redirects} redirects (last to {safe_url(url)})", permanent=True
    )


def _with_params(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    head, _, fragment = url.partition("#")
    separator = "&" if "?" in head else "?"
    return head + separator + urlencode(params) + (f"#{fragment}" if fragment else "")


def _redirected(
    status: int,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    url: str,
    next_url: str,
) -> tuple[str, bytes | None, dict[str, str]]:
    """What a browser sends next: 303 (and 301/302 after a POST) becomes a GET without a
    body; to another host, no header that could carry a credential."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    if _origin(url) != _origin(next_url):
        kept = CROSS_ORIGIN_HEADERS | (_BODY_HEADERS if body is not None else set())
        headers = {k: v for k, v in headers.items() if k.lower() in kept}
    return method, body, headers


_BODY_HEADERS = {"content-type", "content-length", "content-encoding", "transfer-encoding"}


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or ""), parts.port
    except ValueError:
        return "", url, None


def _ascii(host: str) -> str:
    try:
        return host.encode("ascii").decode()
    except UnicodeEncodeError:
        return host.encode("idna").decode()


class _Exchange:
    """One request and its response, run in a thread so that the caller can stop it (and
    keep the deadline) at once: a blocked read cannot be interrupted from its own thread.
    The connection goes to the checked addresses only, one after the other."""

    def __init__(
        self,
        checked: Target,
        method: str,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float,
        max_bytes: int,
        ca_certs: str | None,
    ) -> None:
        self.checked, self.method, self.body = checked, method, body
        self.headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        self.headers["Host"] = checked.host_header  # the checked host, whatever was asked
        self.deadline, self.max_bytes, self.ca_certs = deadline, max_bytes, ca_certs
        self.conn: HTTPConnection | None = None
        self.sock: socket.socket | None = None  # kept: http.client drops it on Connection: close
        self.response: Response | None = None
        self.error: Exception | None = None
        self.done = threading.Event()
        self.aborted = False

    def wait(self, should_stop: Callable[[], bool] | None) -> Response:
        thread = threading.Thread(target=self.run, name="http-exchange", daemon=True)
        thread.start()
        while not self.done.wait(POLL_SECONDS):
            if should_stop is not None and should_stop():
                self.abort(thread)
                raise Stopped("stopped: the attempt was cancelled or lost its lease")
            if time.monotonic() >= self.deadline:
                self.abort(thread)
                raise RequestFailed(f"timed out: no complete answer from {self.where}")
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response

    @property
    def where(self) -> str:
        return f"{self.checked.scheme}://{self.checked.host_header}"

    def abort(self, thread: threading.Thread) -> None:
        self.aborted = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        # A connect in progress may not notice; it ends at its own timeout (a daemon thread).
        thread.join(timeout=1.0)

    def run(self) -> None:
        try:
            self.response = self.exchange()
        except Exception as exc:
            self.error = exc
        finally:
            if self.conn is not None:
                self.conn.close()
            self.done.set()

    def remaining(self) -> float:
        return max(0.01, self.deadline - time.monotonic())

    def exchange(self) -> Response:
        self.connect()
        conn = self.conn
        assert conn is not None
        try:
            self.send(conn)
            answer = conn.getresponse()
            headers = {k.lower(): v for k, v in answer.headers.items()}
            status = answer.status
            keep = self.method != "HEAD" and not (status in REDIRECTS and "location" in headers)
            body, truncated = self.read(answer) if keep else (b"", False)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise RequestFailed(self.failure("the exchange failed", exc)) from None
        return Response(status, headers, body, truncated, "")

    def send(self, conn: HTTPConnection) -> None:
        try:
            conn.request(
                self.method, self.checked.path, body=self.body, headers=self.headers,
                preload_content=False,
            )  # fmt: skip
        except ValueError:  # not its text: the value may be a credential
            raise RequestFailed(
                "a request header holds characters HTTP does not allow (a line break, or "
                "text that is not Latin-1)",
                permanent=True,
            ) from None

    def connect(self) -> None:
        problems = []
        for address in self.checked.addresses:
            conn = self.connection(address)
            self.conn = conn
            try:
                conn.connect()
                self.sock = conn.sock
                return
            except (ssl.SSLError, CertificateError) as exc:
                raise RequestFailed(self.failure("TLS failed", exc), permanent=True) from None
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                problems.append(f"{address}: {_reason(exc)}")
                conn.close()
        raise RequestFailed(f"could not connect to {self.where} ({'; '.join(problems)})") from None

    def connection(self, address: IPAddress) -> HTTPConnection:
        timeout = self.remaining()
        if self.checked.scheme == "http":
            return HTTPConnection(str(address), self.checked.port, timeout=timeout)
        # TLS to the address, but SNI and the certificate check against the URL's host.
        return HTTPSConnection(
            str(address),
            self.checked.port,
            timeout=timeout,
            server_hostname=_ascii(self.checked.host),
            assert_hostname=_ascii(self.checked.host),
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.ca_certs,
        )

    def read(self, answer: BaseHTTPResponse) -> tuple[bytes, bool]:
        """At most max_bytes of the (decoded) body; the rest is left unread and dropped."""
        body = bytearray()
        while len(body) <= self.max_bytes and not self.aborted:
            # Bounded by the deadline; the socket may already be closed (all was read).
            with contextlib.suppress(OSError):
                if self.sock is not None:
                    self.sock.settimeout(self.remaining())
            chunk = answer.read(min(CHUNK, self.max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        return bytes(body[: self.max_bytes]), len(body) > self.max_bytes

    def failure(self, what: str, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError | socket.timeout | urllib3.exceptions.TimeoutError):
            return f"timed out: no complete answer from {self.where}"
        return f"{what} with {self.where}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    """The root cause in words (urllib3 wraps OSErrors in messages naming its objects)."""
    while exc.__context__ is not None and isinstance(exc, urllib3.exceptions.HTTPError):
        exc = exc.__context__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
