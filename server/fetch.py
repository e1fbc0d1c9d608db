"""Fetching URL inputs without turning the server into an SSRF proxy.

A URL in a request makes the server open a connection on the client's behalf, from inside the
deployment's network. So every hop (the URL and each redirect) is checked before connecting:

* http/https only; the host is resolved and *every* address it resolves to must be public
  (not loopback, private, link-local, multicast, reserved, unspecified, or an IPv4 address
  wrapped in IPv6) unless `fetch.allow_private` names the host or a CIDR containing the address;
* the connection then goes to the address that was checked (the URL is rewritten to the IP,
  with the original Host header and TLS server name), so a second DNS answer cannot swap in
  an internal address between the check and the connect (DNS rebinding);
* connect/read timeouts plus a deadline for the whole download, a size cap enforced while
  streaming, content-type checked before the body is read (the accepted media kinds, e.g.
  image/* or audio/*; untyped binary is recognised after reading), a bounded number of redirects.

Every failure is an `OmnivecError` with a 4xx status whose message names the URL and the reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from .errors import ErrorCode, OmnivecError
from .media import BINARY_TYPES, declared_modality, mime_of, sniff_modality, suffix_modality
from .settings import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one wraps (mapped, NAT64, 6to4, Teredo), which is where packets really go."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched from ('loopback', 'private', ...), or None for a public address."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        kind = address_kind(inner)
        return f"{kind} (IPv4 {inner} inside IPv6)" if kind else None
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


class AccessPolicy:
    """Public addresses are always allowed; non-public ones only when the allowlist names them."""

    def __init__(self, allow: list[str]) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            entry = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry:
                    raise ValueError(f"fetch.allow_private entry {entry!r} is neither a host name nor a CIDR") from None
                self.hosts.add(entry.lower().rstrip("."))

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """None when `host` at `ip` may be fetched, else the kind of address that is refused."""
        kind = address_kind(ip)
        if kind is None or host.lower().rstrip(".") in self.hosts:
            return None
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        return kind


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:197] + "..."


class UrlFetcher:
    """Downloads media for URL inputs; one per app, closed with it."""

    def __init__(self, settings: FetchSettings, *, max_bytes: int) -> None:
        self.settings = settings
        self.max_bytes = min(max_bytes, settings.max_bytes)
        self.policy = AccessPolicy(settings.allow_private)
        self._slots = asyncio.Semaphore(settings.max_concurrent)  # a request of 1000 URLs must not open 1000 sockets
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s, read=settings.read_timeout_s, write=settings.read_timeout_s, pool=settings.connect_timeout_s
        )
        # No keep-alive: a pooled connection is keyed by IP, and reusing it for another host
        # would skip that host's TLS name check. No trust_env: a proxy would bypass the IP pin.
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": "omnivec-fetch/1"},
        )

    async def fetch(self, url: str, label: str, modality: str = "image") -> bytes:
        """The body of `url`, which must be `modality`/* (or untyped binary) and at most max_bytes."""
        return (await self.fetch_media(url, label, (modality,)))[1]

    async def fetch_media(self, url: str, label: str, accept: Sequence[str] = ("image",)) -> tuple[str, bytes]:
        """(modality, body) of `url`: the served type picks the modality among `accept` (e.g. image, audio);
        untyped binary is recognised by its URL's extension or magic bytes (else the first accepted)."""
        total = self.settings.total_timeout_s
        try:
            async with self._slots, asyncio.timeout(total):  # the deadline starts once a slot is free
                return await self._fetch(url, label, tuple(accept))
        except TimeoutError:
            raise OmnivecError(
                ErrorCode.URL_TIMEOUT,
                f"{label}: fetching {_shown(url)} took longer than {total:g} s in all; use a faster host or send the file's bytes",
            ) from None

    async def _fetch(self, url: str, label: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        current = url
        wanted = ", ".join([*(f"{m}/*" for m in accept), "*/*;q=0.1"])
        for _hop in range(self.settings.max_redirects + 1):
            target, headers, extensions = await self._pinned(current, label, url)
            headers["Accept"] = wanted
            try:
                async with self._client.stream("GET", target, headers=headers, extensions=extensions) as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        current = urljoin(current, location)
                        continue
                    return await self._read(response, current, label, accept)
            except httpx.TimeoutException as exc:
                phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
                limit = self.settings.connect_timeout_s if isinstance(exc, httpx.ConnectTimeout) else self.settings.read_timeout_s
                raise OmnivecError(
                    ErrorCode.URL_TIMEOUT,
                    f"{label}: {_shown(current)} timed out {phase} (limit {limit:g} s); use a faster host or send the file's bytes",
                ) from None
            except httpx.HTTPError as exc:
                reason = str(exc) or exc.__class__.__name__
                raise OmnivecError(ErrorCode.URL_FETCH_FAILED, f"{label}: cannot fetch {_shown(current)}: {reason}") from None
        raise OmnivecError(
            ErrorCode.URL_FETCH_FAILED,
            f"{label}: {_shown(url)} redirects more than {self.settings.max_redirects} times; link the file itself",
        )

    async def _pinned(self, url: str, label: str, original: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """Check one hop and build a request that connects to the very address that was checked."""
        via = "" if url == original else f" (redirected from {_shown(original)})"
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError as exc:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{label}: {_shown(url)} is not a valid URL ({exc}){via}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise OmnivecError(
                ErrorCode.URL_BLOCKED, f"{label}: {_shown(url)}{via} is refused: only http:// and https:// URLs with a host can be fetched"
            )
        try:
            ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{label}: {_shown(url)} has an invalid host name{via}") from None
        port = port or (443 if parts.scheme == "https" else 80)
        ip = await self._resolve(ascii_host, port, label, url, via)
        ip_host = f"[{ip}]" if ip.version == 6 else str(ip)
        target = urlunsplit((parts.scheme, f"{ip_host}:{port}", parts.path or "/", parts.query, ""))
        host_header = ascii_host if parts.port is None else f"{ascii_host}:{parts.port}"
        if ":" in ascii_host:  # an IPv6 literal
            host_header = f"[{ascii_host}]" + (f":{parts.port}" if parts.port else "")
        extensions = {"sni_hostname": ascii_host} if parts.scheme == "https" else {}
        return target, {"Host": host_header}, extensions

    async def _resolve(self, host: str, port: int, label: str, url: str, via: str) -> IPAddress:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise OmnivecError(ErrorCode.URL_FETCH_FAILED, f"{label}: cannot resolve the host of {_shown(url)}{via} ({exc})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        if not addresses:
            raise OmnivecError(ErrorCode.URL_FETCH_FAILED, f"{label}: the host of {_shown(url)}{via} has no address")
        for ip in addresses:  # all of them: the connection could go to any
            kind = self.policy.refusal(host, ip)
            if kind is not None:
                raise OmnivecError(
                    ErrorCode.URL_BLOCKED,
                    f"{label}: {_shown(url)}{via} is refused: {host} resolves to {ip}, a {kind} address. The server only fetches "
                    "public addresses; an operator can allow trusted internal hosts with OMNIVEC_FETCH__ALLOW_PRIVATE",
                )
        return addresses[0]

    async def _read(self, response: httpx.Response, url: str, label: str, accept: tuple[str, ...]) -> tuple[str, bytes]:
        if not 200 <= response.status_code < 300:
            raise OmnivecError(
                ErrorCode.URL_FETCH_FAILED, f"{label}: {_shown(url)} answered HTTP {response.status_code} {response.reason_phrase}".rstrip()
            )
        mime = mime_of(response.headers.get("content-type"))
        modality = declared_modality(mime)
        if not (mime in BINARY_TYPES or modality in accept):
            kinds = " or ".join(f"{m}/*" for m in accept)
            raise OmnivecError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                f"{label}: {_shown(url)} serves {mime!r}, not {kinds}; link the {' or '.join(accept)} file itself",
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(label, url, f"is {int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(label, url, f"sent more than {self.max_bytes} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        if modality is None:  # untyped binary: the URL's extension, else the bytes themselves
            found = suffix_modality(urlsplit(url).path) or sniff_modality(data)
            modality = found if found in accept else accept[0]
        return modality, data

    def _too_large(self, label: str, url: str, what: str) -> OmnivecError:
        return OmnivecError(
            ErrorCode.DOWNLOAD_TOO_LARGE,
            f"{label}: {_shown(url)} {what}, over the download limit of {self.max_bytes} bytes; link a smaller file "
            "(or raise OMNIVEC_FETCH__MAX_BYTES)",
        )

    async def aclose(self) -> None:
        await self._client.aclose()
