"""removal.fetch: SSRF-safe fetching of user-given URLs.

Only two real servers are ever contacted, both on loopback: ``allowed`` (127.0.0.1, named in
QUICKBG_FETCH_ALLOW) and ``forbidden`` (127.0.0.2, not named). Every test that reaches
``forbidden`` by some encoding or redirect asserts it received no request. Other private
addresses (10.x, 169.254.169.254, ...) are only ever *named*, never contacted: those tests make
any socket connection fail the test, which proves the refusal happens before connecting.
"""

from __future__ import annotations

import socket
import time

import pytest

from removal import fetch
from removal.errors import InvalidInput
from removal.fetch import FetchRefused, check_url, fetch_bytes
from tests.helpers import LocalHTTPServer, TricklingServer

BODY = b"\x89PNG\r\n\x1a\n" + b"x" * 500


@pytest.fixture
def forbidden():
    with LocalHTTPServer("127.0.0.2", {"/img": (200, {}, BODY)}) as server:
        yield server


@pytest.fixture
def allowed(settings, forbidden):
    routes = {
        "/img": (200, {"Content-Type": "image/png"}, BODY),
        "/to-forbidden": (302, {"Location": forbidden.url("/img")}, b""),
        "/to-forbidden-decimal": (
            301, {"Location": f"http://2130706434:{forbidden.port}/img"}, b""),
        "/to-metadata": (307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/relative": (302, {"Location": "/img"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/missing": (404, {}, b"nope"),
        "/ftp": (302, {"Location": "ftp://example.com/x.png"}, b""),
    }
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        yield server


@pytest.fixture
def no_connections(monkeypatch):
    """Any attempt to open a socket connection fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """getaddrinfo answering ``answers[host]`` (lists of IPs); counts its calls per host."""
    real = socket.getaddrinfo
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        calls[host] = calls.get(host, 0) + 1
        ips = answers[host]
        ip = ips[min(calls[host] - 1, len(ips) - 1)] if isinstance(ips[0], list) else None
        chosen = ip if ip is not None else ips
        result = []
        for addr in chosen:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if family == socket.AF_INET6 else (addr, port)
            result.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return result

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_allowlisted_server_is_fetched(allowed, forbidden):
    assert fetch_bytes(allowed.url("/img"), max_bytes=10_000) == BODY
    assert [r["path"] for r in allowed.requests] == ["/img"]
    assert allowed.requests[0]["headers"]["Host"] == f"127.0.0.1:{allowed.port}"
    assert forbidden.requests == []


def test_fetch_refused_is_invalid_input():
    assert issubclass(FetchRefused, InvalidInput)


@pytest.mark.parametrize("host", [
    "127.0.0.2", "2130706434", "0x7f000002", "0177.0.0.2", "127.2", "0x7f.0.0.2",
    "[::ffff:127.0.0.2]", "[::ffff:7f00:2]",
])
def test_forbidden_server_is_never_contacted_in_any_encoding(allowed, forbidden, host):
    # 0177.0.0.2 (octal) is refused by the URL parser already; the others resolve to 127.0.0.2.
    with pytest.raises(FetchRefused, match="loopback|Not a valid URL: Invalid IPv4"):
        fetch_bytes(f"http://{host}:{forbidden.port}/img", max_bytes=10_000)
    assert forbidden.requests == []


@pytest.mark.parametrize("path", ["/to-forbidden", "/to-forbidden-decimal"])
def test_redirect_to_forbidden_server_is_refused_before_contacting_it(allowed, forbidden, path):
    with pytest.raises(FetchRefused, match="resolves to a loopback address"):
        fetch_bytes(allowed.url(path), max_bytes=10_000)
    assert [r["path"] for r in allowed.requests] == [path]
    assert forbidden.requests == []


def test_redirect_to_metadata_address_is_refused(allowed, forbidden, monkeypatch):
    real_connect = fetch._PinnedBackend.connect_tcp
    targets = []

    def recording(self, host, port, *args, **kwargs):
        targets.append(self._ip)
        assert self._ip == "127.0.0.1", "only the allowlisted server may be connected to"
        return real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(fetch._PinnedBackend, "connect_tcp", recording)
    with pytest.raises(FetchRefused, match="'169.254.169.254' resolves to a link-local address"):
        fetch_bytes(allowed.url("/to-metadata"), max_bytes=10_000)
    assert targets == ["127.0.0.1"]


def test_relative_redirect_is_followed(allowed):
    assert fetch_bytes(allowed.url("/relative"), max_bytes=10_000) == BODY
    assert [r["path"] for r in allowed.requests] == ["/relative", "/img"]


def test_redirect_loop_is_cut_off(allowed):
    with pytest.raises(FetchRefused, match="Too many redirects"):
        fetch_bytes(allowed.url("/loop"), max_bytes=10_000)
    assert len(allowed.requests) == fetch.MAX_REDIRECTS + 1


def test_redirect_to_other_scheme_is_refused(allowed):
    with pytest.raises(FetchRefused, match="Only http and https"):
        fetch_bytes(allowed.url("/ftp"), max_bytes=10_000)


def test_error_status_is_refused_with_the_status(allowed):
    with pytest.raises(FetchRefused, match="HTTP 404"):
        fetch_bytes(allowed.url("/missing"), max_bytes=10_000)


@pytest.mark.parametrize("url, kind", [
    ("http://10.0.0.1/x.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0/x.png", "unspecified"),
    ("http://0/x.png", "unspecified"),
    ("http://224.0.0.1/x.png", "multicast"),
    ("http://240.0.0.1/x.png", "reserved"),
    ("http://100.64.0.1/x.png", "not public"),
    ("http://192.168.1.1/x.png", "private"),
    ("http://0xa9fea9fe/x.png", "link-local"),
    ("http://2852039166/x.png", "link-local"),
    ("http://[::1]/x.png", "loopback"),
    ("http://[fd00::1]/x.png", "private"),
    ("http://[fe80::1]/x.png", "link-local"),
    ("http://[::ffff:10.0.0.1]/x.png", "private"),
    ("http://[::ffff:a9fe:a9fe]/x.png", "link-local"),
    ("http://[2002:a9fe:a9fe::1]/x.png", "link-local"),
    ("http://[64:ff9b::a9fe:a9fe]/x.png", "link-local"),
])
def test_private_addresses_are_refused_before_any_connection(url, kind, no_connections):
    with pytest.raises(FetchRefused, match=kind):
        fetch_bytes(url, max_bytes=10_000)
    with pytest.raises(FetchRefused, match=kind):
        check_url(url)


@pytest.mark.parametrize("answer", [
    ["10.1.2.3"], ["169.254.169.254"], ["fd12::1"], ["8.8.8.8", "192.168.0.10"],
    ["::ffff:169.254.169.254"],
])
def test_dns_answers_that_resolve_to_private_addresses_are_refused(monkeypatch, no_connections,
                                                                     answer):
    fake_dns(monkeypatch, {"images.example.test": answer})
    with pytest.raises(FetchRefused, match="images.example.test' resolves to a "):
        fetch_bytes("http://images.example.test/cat.jpg", max_bytes=10_000)


def test_resolved_address_is_pinned_no_second_lookup(settings, monkeypatch, forbidden):
    """DNS rebinding: the first answer is checked and used; a later answer is never asked for."""
    with LocalHTTPServer("127.0.0.1", {"/img": (200, {}, BODY)}) as allowed:
        settings.QUICKBG_FETCH_ALLOW = [f"rebind.example.test:{allowed.port}"]
        calls = fake_dns(monkeypatch, {"rebind.example.test": [["127.0.0.1"], ["127.0.0.2"]]})
        port = allowed.port
        assert fetch_bytes(f"http://rebind.example.test:{port}/img", max_bytes=10_000) == BODY
        assert calls == {"rebind.example.test": 1}
        assert allowed.requests[0]["headers"]["Host"] == f"rebind.example.test:{port}"
    assert forbidden.requests == []


def test_cidr_allowlist_entry(settings, forbidden):
    settings.QUICKBG_FETCH_ALLOW = ["127.0.0.2/32"]
    assert fetch_bytes(forbidden.url("/img"), max_bytes=10_000) == BODY
    assert len(forbidden.requests) == 1


def test_allowlist_entry_is_per_port(settings, forbidden):
    settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.2:{forbidden.port + 1}"]
    with pytest.raises(FetchRefused, match="loopback"):
        fetch_bytes(forbidden.url("/img"), max_bytes=10_000)
    assert forbidden.requests == []


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/a.png", "Only http and https"),
    ("file:///etc/passwd", "Only http and https"),
    ("gopher://127.0.0.1:70/", "Only http and https"),
    ("//example.com/a.png", "Only http and https"),
    ("http://user:pass@example.com/a.png", "credentials"),
    ("http://user@example.com/a.png", "credentials"),
    ("http:///a.png", "no host"),
    ("http://[::1/", "Not a valid URL"),
    ("http://127.0.0.1:99999/", "port 99999 is out of range"),
])
def test_bad_urls_are_refused_before_any_connection(url, message, no_connections):
    with pytest.raises(FetchRefused, match=message):
        fetch_bytes(url, max_bytes=10_000)


def test_unresolvable_host_is_refused(monkeypatch, no_connections):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchRefused, match="Could not resolve"):
        fetch_bytes("http://no-such-host.example.test/a.png", max_bytes=10_000)


def test_body_over_the_limit_is_refused_with_and_without_content_length(settings):
    big = b"y" * 50_000

    def chunked(handler):
        return 200, {"Transfer-Encoding": "chunked"}, (
            b"".join(b"%x\r\n%s\r\n" % (4096, big[i:i + 4096]) for i in range(0, 49152, 4096))
            + b"0\r\n\r\n")

    routes = {"/declared": (200, {}, big), "/chunked": chunked}
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        for path in ("/declared", "/chunked"):
            with pytest.raises(FetchRefused, match="larger than the limit of 10000 bytes"):
                fetch_bytes(server.url(path), max_bytes=10_000)
        assert len(fetch_bytes(server.url("/chunked"), max_bytes=49152)) == 49152


def test_slow_server_times_out_with_a_clear_message(settings):
    def slow(handler):
        time.sleep(3)
        return 200, {}, BODY

    with LocalHTTPServer("127.0.0.1", {"/slow": slow}) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        settings.QUICKBG_FETCH_TIMEOUT = 0.5
        started = time.monotonic()
        with pytest.raises(FetchRefused, match=r"timed out \(limit 0.5 s\)"):
            fetch_bytes(server.url("/slow"), max_bytes=10_000)
        assert time.monotonic() - started < 2


def test_check_url_accepts_a_public_address_without_connecting(no_connections):
    assert check_url("https://93.184.216.34/hook") is None


def test_post_returns_status_and_excerpt(allowed, forbidden):
    allowed.routes["/hook"] = (500, {}, b"e" * 5000)
    answer = fetch.post(allowed.url("/hook"), content=b'{"a":1}',
                        headers={"Content-Type": "application/json"}, excerpt_bytes=100)
    assert answer.status_code == 500
    assert answer.body == b"e" * 100
    assert allowed.requests[-1]["body"] == b'{"a":1}'
    with pytest.raises(FetchRefused, match="loopback"):
        fetch.post(forbidden.url("/hook"), content=b"{}", headers={})
    assert forbidden.requests == []


def _tls_pair(tmp_path, name: str):
    """A throwaway CA and a server certificate for ``name`` signed by it (PEM files)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, issuer, key, signer, *, ca: bool, san=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "QuickBG test CA")])
    ca_cert = cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key,
                ca_key, ca=False, san=[x509.DNSName(name)])
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem) + key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / "ca.pem", tmp_path / "leaf.pem"


def test_https_to_the_pinned_address_keeps_host_sni_and_certificate_check(
        settings, monkeypatch, tmp_path, forbidden):
    """The connection goes to the checked address, yet TLS is for the URL's host name: SNI and
    the certificate check use it, and a certificate for another name is refused."""
    import ssl

    ca, leaf = _tls_pair(tmp_path, "images.example.test")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(leaf)
    seen_sni = []
    server_side.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    monkeypatch.setattr(fetch, "_ssl_context", lambda: ssl.create_default_context(cafile=ca))
    with LocalHTTPServer("127.0.0.1", {"/img": (200, {}, BODY)}, tls=server_side) as server:
        port = server.port
        settings.QUICKBG_FETCH_ALLOW = [f"images.example.test:{port}",
                                        f"other.example.test:{port}"]
        fake_dns(monkeypatch, {"images.example.test": ["127.0.0.1"],
                               "other.example.test": ["127.0.0.1"]})
        assert fetch_bytes(f"https://images.example.test:{port}/img", max_bytes=10_000) == BODY
        assert seen_sni == ["images.example.test"]
        assert server.requests[0]["headers"]["Host"] == f"images.example.test:{port}"
        with pytest.raises(FetchRefused, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            fetch_bytes(f"https://other.example.test:{port}/img", max_bytes=10_000)
        assert len(server.requests) == 1
    assert forbidden.requests == []


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"a" * 200,  # headers
    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + BODY,  # headers fast, body slow
])
def test_a_peer_trickling_bytes_is_cut_off_at_the_overall_deadline(settings, answer):
    """Every byte comes within the per-read timeout, yet the whole exchange ends at the limit."""
    with TricklingServer(answer, interval=0.05) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        settings.QUICKBG_FETCH_TIMEOUT = 1.0
        started = time.monotonic()
        with pytest.raises(FetchRefused, match=r"timed out \(limit 1 s\)"):
            fetch_bytes(server.url("/img"), max_bytes=1_000_000)
        elapsed = time.monotonic() - started
        assert server.connections == 1
    assert elapsed < 2.0, f"the fetch took {elapsed:.1f} s for a 1 s limit"


def test_a_webhook_receiver_trickling_its_answer_is_cut_off_at_the_timeout(settings):
    with TricklingServer(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"b" * 200, interval=0.05) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        started = time.monotonic()
        with pytest.raises(FetchRefused, match=r"timed out \(limit 0.8 s\)"):
            fetch.post(server.url("/hook"), content=b"{}", headers={}, timeout=0.8)
        elapsed = time.monotonic() - started
    assert elapsed < 1.8, f"the POST took {elapsed:.1f} s for a 0.8 s limit"


def test_an_encoded_body_is_refused_not_inflated(settings):
    import gzip

    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 MB behind 20 KB
    routes = {"/gz": (200, {"Content-Encoding": "gzip", "Content-Type": "image/png"}, bomb)}
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        with pytest.raises(FetchRefused, match=r"The image at the URL came compressed "
                                               r"\(Content-Encoding: gzip\) although we asked "
                                               r"for none; serve it uncompressed\."):
            fetch_bytes(server.url("/gz"), max_bytes=10 * 1024 * 1024)
        assert server.requests[0]["headers"]["Accept-Encoding"] == "identity"


def test_a_webhook_answer_is_read_as_sent_never_inflated(settings):
    import gzip

    routes = {"/hook": (200, {"Content-Encoding": "gzip"}, gzip.compress(b"ok" * 100_000))}
    with LocalHTTPServer("127.0.0.1", routes) as server:
        settings.QUICKBG_FETCH_ALLOW = [f"127.0.0.1:{server.port}"]
        answer = fetch.post(server.url("/hook"), content=b"{}", headers={}, excerpt_bytes=100)
        assert answer.status_code == 200
        assert answer.body.startswith(b"\x1f\x8b") and len(answer.body) == 100  # raw gzip bytes
        assert server.requests[0]["headers"]["Accept-Encoding"] == "identity"


def test_ipv6_site_local_is_not_public():
    """fec0::/10 (site-local): Python's ipaddress counts it as global; we do not. Checked on the
    address alone: nothing is resolved or contacted."""
    import ipaddress

    assert fetch._why_not_public(ipaddress.ip_address("fec0::1")) == "site-local"
    assert fetch._why_not_public(ipaddress.ip_address("feff:ffff::1")) == "site-local"
    assert fetch._why_not_public(ipaddress.ip_address("2001:4860:4860::8888")) is None


def test_a_refusal_names_the_kind_of_address_but_not_the_address(monkeypatch, no_connections):
    fake_dns(monkeypatch, {"intranet.example.test": ["10.20.30.40"]})
    with pytest.raises(FetchRefused) as refused:
        fetch_bytes("http://intranet.example.test/cat.jpg", max_bytes=10_000)
    assert refused.value.detail == (
        "The URL's host 'intranet.example.test' resolves to a private address; only public "
        "addresses may be fetched (an operator can allow it in QUICKBG_FETCH_ALLOW).")
    assert "10.20" not in refused.value.detail
