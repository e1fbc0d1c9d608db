"""URL inputs: the SSRF guard and the bounded download, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import time

import pytest

from omnivec.server.errors import OmnivecError
from omnivec.server.fetch import AccessPolicy, UrlFetcher, address_kind
from omnivec.server.settings import FetchSettings
from tests.media import encode, scene
from tests.media_server import MediaServer

PNG = encode(scene(40, 30), "PNG")


@pytest.mark.parametrize(
    "ip, kind",
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 inside IPv6)"),
        ("64:ff9b::a9fe:a9fe", "link-local (IPv4 169.254.169.254 inside IPv6)"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_kinds(ip, kind):
    assert address_kind(ipaddress.ip_address(ip)) == kind


def test_allowlist_by_cidr_and_host():
    policy = AccessPolicy(["10.0.0.0/8", "images.internal"])
    assert policy.refusal("x", ipaddress.ip_address("10.2.3.4")) is None
    assert policy.refusal("x", ipaddress.ip_address("192.168.0.1")) == "private"
    assert policy.refusal("images.internal", ipaddress.ip_address("192.168.0.1")) is None
    assert policy.refusal("x", ipaddress.ip_address("1.1.1.1")) is None
    with pytest.raises(ValueError, match="neither"):
        AccessPolicy(["10.0.0.0/33"])


def _fetch(url: str, allow=("127.0.0.1/32",), **settings) -> bytes:
    async def go() -> bytes:
        fetcher = UrlFetcher(FetchSettings(allow_private=list(allow), **settings), max_bytes=1024 * 1024)
        try:
            return await fetcher.fetch(url, "inputs[0].url")
        finally:
            await fetcher.aclose()

    return asyncio.run(go())


def _error(url: str, **kw) -> OmnivecError:
    with pytest.raises(OmnivecError) as info:
        _fetch(url, **kw)
    assert url[:60] in info.value.message or "redirect" in info.value.message, info.value.message
    assert 400 <= info.value.status < 500
    return info.value


@pytest.fixture(scope="module")
def media():
    with MediaServer({"a.png": PNG}, big_bytes=2 * 1024 * 1024, stall_s=3.0) as srv:
        yield srv


def test_fetches_an_allowed_local_image_with_redirects(media):
    assert _fetch(f"{media.url}/img/a.png") == PNG
    assert _fetch(f"{media.url}/redirect/2") == PNG
    assert _fetch(f"{media.url}/untyped") == PNG
    assert media.hits[-1] == f"127.0.0.1:{media.port}/untyped", "the Host header keeps the URL's host"


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://169.254.169.254/latest/meta-data/", ["link-local", "OMNIVEC_FETCH__ALLOW_PRIVATE"]),
        ("http://10.0.0.5/x.png", ["private"]),
        ("http://[::1]/x.png", ["loopback"]),
        ("http://0177.0.0.1/x.png", ["loopback"]),  # octal spelling of 127.0.0.1
        ("http://2130706433/x.png", ["loopback"]),  # decimal spelling
        ("http://localhost/x.png", ["loopback"]),
        ("file:///etc/passwd", ["only http"]),
        ("ftp://example.com/x.png", ["only http"]),
    ],
)
def test_blocked_addresses(url, words):
    err = _error(url, allow=())
    assert err.code.value == "url_blocked" and err.status == 422
    for word in words:
        assert word in err.message, err.message


def test_loopback_needs_the_allowlist(media):
    err = _error(f"{media.url}/img/a.png", allow=())
    assert err.code.value == "url_blocked" and "127.0.0.1" in err.message


def test_redirect_to_a_blocked_address_is_refused(media):
    err = _error(f"{media.url}/to-blocked")
    assert err.code.value == "url_blocked" and "169.254.169.254" in err.message and "redirected from" in err.message


def test_too_many_redirects(media):
    err = _error(f"{media.url}/redirect/3", max_redirects=2)
    assert err.code.value == "url_fetch_failed" and "more than 2" in err.message


def test_read_timeout(media):
    started = time.monotonic()
    err = _error(f"{media.url}/slow", read_timeout_s=0.5)
    assert err.code.value == "url_timeout" and "timed out" in err.message
    assert time.monotonic() - started < 2.5


def test_total_deadline_against_slow_drip(media):
    err = _error(f"{media.url}/drip", read_timeout_s=2, total_timeout_s=1.0)
    assert err.code.value == "url_timeout" and "in all" in err.message


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_oversize_download(media, path):
    err = _error(f"{media.url}{path}")
    assert err.code.value == "download_too_large" and err.status == 413 and str(1024 * 1024) in err.message


def test_wrong_content_type(media):
    err = _error(f"{media.url}/html")
    assert err.code.value == "unsupported_media_type" and "text/html" in err.message


def test_http_error_status(media):
    err = _error(f"{media.url}/missing")
    assert err.code.value == "url_fetch_failed" and "404" in err.message


def test_connection_refused_and_unresolvable():
    from omnivec.server_process import free_port

    err = _error(f"http://127.0.0.1:{free_port()}/x.png")
    assert err.code.value == "url_fetch_failed"
    err = _error("http://no-such-host.invalid/x.png")
    assert err.code.value == "url_fetch_failed" and "resolve" in err.message
