"""Outbound HTTP a caller can aim (webhook URLs): one client that resolves, checks and pins the destination.

A URL must be http(s), name a host, carry no user:password@ and a port in 1-65535. Its host is resolved by
the resolver the connection itself uses, and every address it resolves to is checked: loopback, private,
link-local, unique-local, multicast, reserved, unspecified and anything else not globally routable is
refused, also when wrapped in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64). The connection then goes only to the
addresses checked, so a DNS answer cannot change between the check and the connect; the Host header and the
TLS certificate check still use the name. Redirects are never followed. Spellings such as `2130706433`,
`0177.0.0.1`, `127.1` or `0x7f.1` resolve to 127.0.0.1 and are refused like it.

OUTBOUND_ALLOW names hosts and networks an operator permits anyway (internal hooks). Destinations the
operator configures (TELEGRAM_API_URL, USERS_SERVICE_URL) do not go through here.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import SimpleAsyncHTTPClient

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The well-known NAT64 prefix (RFC 6052); the local-use 64:ff9b:1::/48 is not global and is refused as such.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
REFUSED_CHECKS = ("loopback", "private", "link_local", "multicast", "reserved", "unspecified", "site_local")


class DestinationRefused(Exception):
    """The destination is not one this service may connect to; `detail` says why (for the log only)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def check_url(url: str) -> tuple[str, int]:
    """The host and port of `url`, or DestinationRefused when its form is not acceptable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused(f"scheme {parts.scheme!r} is not http or https")
    if "@" in parts.netloc:
        raise DestinationRefused("the URL carries user information")
    if not parts.hostname:
        raise DestinationRefused("the URL names no host")
    if port == 0:
        raise DestinationRefused("port 0")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host a connection to `address` really reaches (IPv4-mapped, NAT64), if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def tunnelled_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 end point a tunnelled IPv6 address names (6to4, the Teredo client), if any."""
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    return None


def why_refused(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        translated = translated_ipv4(address)
        if translated is not None:
            why = why_refused(translated)
            return f"{why} (as {translated})" if why else None
        tunnelled = tunnelled_ipv4(address)
        if tunnelled is not None and (why := why_refused(tunnelled)):
            return f"{why} (as {tunnelled})"
    for check in REFUSED_CHECKS:
        if getattr(address, f"is_{check}", False):
            return check.replace("_", "-")
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class Allowlist:
    """Hosts (by name) and networks an operator lets through although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: tuple[str, ...] | list[str]) -> Allowlist:
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(normal_host(entry))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return normal_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            candidates.append(address.ipv4_mapped)
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def allowlist_entry(raw: str) -> str:
    """One OUTBOUND_ALLOW entry: an address, a network (CIDR) or a host name."""
    value = raw.strip()
    try:
        ipaddress.ip_network(value, strict=False)
        return value
    except ValueError:
        pass
    host = normal_host(value)
    labels = host.split(".")
    if (
        not host
        or len(host) > 253
        or not all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels
        )
    ):
        raise ValueError(f"must hold addresses, networks (CIDR) or host names, got {raw!r}")
    return host


class PolicyResolver(Resolver):
    """Resolves like the event loop does, then refuses the whole answer if any address is not allowed.

    A name that does not exist is refused too: were it "unreachable" while an internal name is "not
    allowed", a caller could tell which internal names exist. A resolver failing for now stays retryable."""

    def initialize(self, allow: Allowlist, resolver: Resolver | None = None) -> None:  # a tornado Configurable
        self.allow = allow
        self.resolver = resolver or DefaultLoopResolver()

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC):
        try:
            answer = await self.resolver.resolve(host, port, family)
        except socket.gaierror as exc:
            if exc.errno in NO_SUCH_NAME:
                raise DestinationRefused(f"{host} does not resolve: {exc}") from None
            raise
        if self.allow.allows_host(host):
            return answer
        for _family, sockaddr in answer:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            why = why_refused(address)
            if why and not self.allow.allows_address(address):
                raise DestinationRefused(f"{host} resolves to {address}: {why}")
        return answer


class OutboundHTTP:
    """The HTTP client for destinations a caller chose (same `fetch` as tornado's client)."""

    def __init__(
        self,
        allow: Allowlist,
        max_clients: int = 64,
        resolver: Resolver | None = None,
        max_body_size: int | None = None,
    ):
        # simple_httpclient by name: it is the implementation that connects through `resolver`.
        self.client = SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=max_clients,
            resolver=PolicyResolver(allow=allow, resolver=resolver),
            max_body_size=max_body_size,
        )

    async def fetch(self, request: HTTPRequest) -> HTTPResponse:
        check_url(request.url)
        request.follow_redirects = False
        return await self.client.fetch(request)

    def close(self) -> None:
        self.client.close()
