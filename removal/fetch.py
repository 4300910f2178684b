"""Fetch a URL a user gave us without letting them reach our own network (SSRF).

Used for ``image_url`` on uploads (and remove.bg's ``image_url``/``bg_image_url``) and for every
webhook delivery. The rules, checked before any connection is opened:

- only ``http`` and ``https``; no credentials in the URL (``http://user:pass@host``);
- the host is resolved once with ``getaddrinfo`` (so ``2130706433``, ``0x7f.1``, ``0177.0.0.1``
  and IPv6 literals mean what the operating system's resolver says they mean), **every** address
  of the answer is checked, and the connection goes to the checked address: the transport below
  ignores the host name when it connects, so there is no second lookup a DNS rebinding answer
  could change. The ``Host`` header and TLS SNI/certificate check still use the URL's host name;
- an address is refused when it is not globally reachable: private, loopback, link-local,
  multicast, reserved, unspecified, shared (CGNAT) ranges, plus the IPv4 address hidden in an
  IPv4-mapped, 6to4 or NAT64 IPv6 address;
- redirects are followed by hand (at most ``MAX_REDIRECTS`` hops), each hop checked like the
  first URL;
- the body is streamed and cut off past ``max_bytes``, counted on the bytes that cross the
  wire: we ask for ``Accept-Encoding: identity`` and refuse an answer that is encoded anyway
  (``Content-Encoding: gzip``...), so nothing is ever inflated;
- **one deadline for the whole exchange**: ``QUICKBG_FETCH_TIMEOUT`` (or a webhook's timeout)
  bounds connect, TLS handshake, sending, headers and body together, every redirect hop
  included. Each socket operation's timeout is clipped to what is left of it
  (``_DeadlineStream``), so a peer trickling one byte just under each read timeout is cut off at
  the deadline, not kept for ever. Connecting alone is also bounded by
  ``QUICKBG_FETCH_CONNECT_TIMEOUT``. (The name lookup before it is the system resolver's.)
- ``QUICKBG_FETCH_ALLOW`` (comma-separated ``host:port`` or CIDR entries) lets an intranet host
  through anyway.

Every refusal and every failure to fetch raises :class:`FetchRefused`, an ``InvalidInput``: the
API answers 400 with the message, a job records it as the task's error. Never a 5xx.

Why httpx: it is the well-kept client with a pluggable transport; its connection layer
(httpcore) takes a network backend, which is where the pinned address goes in. requests/urllib3
would need a patched connection class for the same thing.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import httpcore
import httpx
from django.conf import settings

from removal.errors import InvalidInput

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(InvalidInput):
    """The URL is not allowed, or fetching it failed; ``detail`` says which and why."""


@dataclass(frozen=True)
class Response:
    """What a POST through :func:`post` got back (webhook deliveries record it)."""

    status_code: int
    body: bytes  # at most the ``max_bytes`` asked for (the rest is not read)
    elapsed: float  # seconds


# --- Checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str
    port: int
    ip: str  # the checked address the connection goes to


def _allow_entries() -> list[str]:
    raw = getattr(settings, "QUICKBG_FETCH_ALLOW", "")
    if isinstance(raw, str):
        raw = raw.split(",")
    return [entry.strip() for entry in raw if entry.strip()]


def _allowed(host: str, port: int, ip: IPAddress) -> bool:
    """True when ``QUICKBG_FETCH_ALLOW`` names this host:port, address:port or address range."""
    for entry in _allow_entries():
        if "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
            continue
        entry_host, _, entry_port = entry.rpartition(":")
        entry_host = entry_host.strip("[]").lower()
        if not entry_port.isdigit() or int(entry_port) != port:
            continue
        if entry_host in (host.lower(), str(ip)):
            return True
    return False


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [addr for addr in (ip.ipv4_mapped, ip.sixtofour) if addr is not None]
    if ip.teredo:
        found.append(ip.teredo[1])
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _why_not_public(ip: IPAddress) -> str | None:
    """The kind of non-public address ``ip`` is, or None when it is globally reachable."""
    for inner in _embedded_ipv4(ip):
        reason = _why_not_public(inner)
        if reason:
            return reason
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        # Deprecated by RFC 3879 but still routed inside some networks; Python calls it global.
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    )
    for name, hit in checks:
        if hit:
            return name
    if not ip.is_global:
        return "not public"
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError
        raise FetchRefused(f"Could not resolve the host {host!r}: {exc}.") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchRefused(f"The host {host!r} has no address.")
    return addresses


def _check(url: str | httpx.URL) -> _Target:
    """Parse, resolve and check one URL; the returned target pins the address to connect to."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchRefused(f"Not a valid URL: {exc}.") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchRefused(
            f"Only http and https URLs are allowed, not {parsed.scheme or 'no scheme'!r}."
        )
    if parsed.userinfo:
        raise FetchRefused("URLs with credentials (user:password@) are not allowed.")
    host = parsed.host
    if not host:
        raise FetchRefused("The URL has no host.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise FetchRefused(f"Not a valid URL: port {port} is out of range.")
    addresses = _resolve(host, port)
    for ip in addresses:
        reason = _why_not_public(ip)
        if reason and not _allowed(host, port, ip):
            # Which address it resolved to is not said: that would map our internal DNS.
            raise FetchRefused(
                f"The URL's host {host!r} resolves to a {reason} address; only public "
                "addresses may be fetched (an operator can allow it in QUICKBG_FETCH_ALLOW)."
            )
    return _Target(url=parsed, host=host, port=port, ip=str(addresses[0]))


def check_url(url: str) -> None:
    """Raise :class:`FetchRefused` unless ``url`` may be fetched now (webhook registration)."""
    _check(url)


# --- Transport: connect to the checked address only --------------------------------------------


def _left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    """``timeout`` clipped to what is left before ``deadline``; ``error`` once nothing is."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the overall time limit was reached")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the exchange's deadline.

    httpx's timeouts apply to each socket operation alone, so on their own they never stop a
    peer that sends a byte now and then; clipping each operation to the time left does."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._stream.start_tls(
            ssl_context, server_hostname, _left(self._deadline, timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.SyncBackend):
    """Opens every TCP connection to one already-checked address, whatever host is asked for,
    and bounds everything done on it by ``deadline`` (``time.monotonic()`` seconds)."""

    def __init__(self, ip: str, deadline: float):
        self._ip = ip
        self._deadline = deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = super().connect_tcp(self._ip, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, *args, **kwargs):  # pragma: no cover - never asked for
        raise httpcore.ConnectError("unix sockets are not allowed")


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the trust store costs tens of milliseconds: once per process, not per fetch.
    return ssl.create_default_context()


def _ssl_context() -> ssl.SSLContext:
    """The system's trust store; the certificate is checked against the URL's host name."""
    return _default_ssl_context()


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool swapped for one on the pinned backend.

    httpx.HTTPTransport takes no network backend argument, so the pool it builds is replaced
    (``_pool`` is the attribute its ``handle_request`` uses; pinned to httpx 0.28 in pyproject).
    """

    def __init__(self, ip: str, deadline: float):
        context = _ssl_context()
        super().__init__(verify=context, retries=0)  # our context: no trust store loaded again
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=1,
            retries=0,
            network_backend=_PinnedBackend(ip, deadline),
        )


def _timeouts() -> tuple[float, float]:
    connect = float(getattr(settings, "QUICKBG_FETCH_CONNECT_TIMEOUT", 5))
    total = float(getattr(settings, "QUICKBG_FETCH_TIMEOUT", 20))
    return connect, total


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float, *, cut: bool,
                 what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():  # the bytes as sent: never inflated
        size += len(chunk)
        if size > max_bytes:
            if cut:  # a response excerpt: keep the start, drop the rest
                chunks.append(chunk[: max_bytes - (size - len(chunk))])
                break
            raise FetchRefused(f"{what} is larger than the limit of {max_bytes} bytes.")
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("total time exceeded")
    return b"".join(chunks)


@contextlib.contextmanager
def _send(method: str, target: _Target, *, content: bytes | None, headers: dict[str, str],
          deadline: float, connect_timeout: float) -> Iterator[httpx.Response]:
    """Send one request to the pinned address; yields the streamed response, closes it all."""
    remaining = max(0.001, deadline - time.monotonic())
    timeout = httpx.Timeout(remaining, connect=min(connect_timeout, remaining))
    with httpx.Client(transport=_PinnedTransport(target.ip, deadline), timeout=timeout,
                      follow_redirects=False, trust_env=False) as client:
        request = client.build_request(method, target.url, content=content, headers=headers)
        response = client.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()


def _refuse_encoded(response: httpx.Response, what: str) -> None:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchRefused(
            f"{what} came compressed (Content-Encoding: {encoding[:40]}) although we asked for "
            "none; serve it uncompressed."
        )


def _network_error(url: httpx.URL, exc: Exception, total: float) -> FetchRefused:
    if isinstance(exc, httpx.TimeoutException):
        return FetchRefused(f"Fetching {url.host} timed out (limit {total:g} s).")
    return FetchRefused(f"Could not fetch from {url.host}: {exc or type(exc).__name__}.")


def fetch_bytes(url: str, *, max_bytes: int) -> bytes:
    """GET ``url`` under the rules above and return the body (at most ``max_bytes``)."""
    connect_timeout, total = _timeouts()
    deadline = time.monotonic() + total
    current: str | httpx.URL = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = _check(current)
        try:
            with _send("GET", target, content=None, deadline=deadline,
                       headers={"Accept": "image/*", "Accept-Encoding": "identity"},
                       connect_timeout=connect_timeout) as response:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused(
                            f"{target.host} answered {response.status_code} without a Location."
                        )
                    current = urljoin(str(target.url), location)
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchRefused(
                        f"The image URL answered HTTP {response.status_code}, not 200."
                    )
                _refuse_encoded(response, "The image at the URL")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchRefused(
                        f"The image at the URL is larger than the limit of {max_bytes} bytes."
                    )
                return _read_capped(response, max_bytes, deadline, cut=False,
                                    what="The image at the URL")
        except httpx.HTTPError as exc:
            raise _network_error(target.url, exc, total) from None
    raise FetchRefused(f"Too many redirects (more than {MAX_REDIRECTS}).")


def post(url: str, *, content: bytes, headers: dict[str, str], excerpt_bytes: int = 1024,
         timeout: float | None = None) -> Response:
    """POST ``content`` to ``url`` under the same rules; redirects are not followed.

    Returns the status and the first ``excerpt_bytes`` of the answer whatever the status is;
    raises :class:`FetchRefused` when the URL is refused or the request fails or times out.
    """
    connect_timeout, total = _timeouts()
    if timeout is not None:
        total = timeout
    started = time.monotonic()
    target = _check(url)
    headers = {"Accept-Encoding": "identity", **headers}
    try:
        with _send("POST", target, content=content, headers=headers,
                   deadline=started + total, connect_timeout=connect_timeout) as response:
            body = _read_capped(response, excerpt_bytes, started + total, cut=True,
                                what="The answer")
            return Response(response.status_code, body, time.monotonic() - started)
    except httpx.HTTPError as exc:
        raise _network_error(target.url, exc, total) from None

