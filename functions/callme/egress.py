"""Which addresses a callback may reach, and the URL rules checked when a task is registered.

A callback may only connect to a public address. The check is made twice: here, on the URL alone
(IP literals in any notation, ``localhost``), and at dispatch on the address actually connected.
Networks listed in ``allowed`` (the local stack allows loopback) are let through explicitly.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import cache
from urllib.parse import SplitResult, urlsplit

from .errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The address ranges every callback is refused: whatever Python's ``ipaddress`` does not call
# global (private, loopback, reserved, shared, documentation, benchmarking, IPv6 unique-local ...),
# and requests-hardened's own list of the ranges Python calls global but that are not public
# (EXTRA_BLOCKED_NET_RANGES: 6to4 relays, NAT64, ORCHIDv2, segment routing, and 192.0.0.0/24 and the
# like for Python versions that call parts of them global). requests-hardened refuses those at the
# connection too; callme checks them when a task is registered as well. All that callme adds is
# below: the allowed networks (EgressPolicy), the IPv4 address inside an IPv6 one, and naming the
# cloud's metadata addresses in the refusal.
_CLOUD_METADATA: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # cloud metadata (169.254.169.254), Lambda and ECS credentials
        "fd00:ec2::/32",  # EC2 IPv6 metadata
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# A label of a host name: letters, digits, hyphens (not first or last) and underscores (not allowed
# in host names by RFC 1123, but found in DNS names that resolve and that clients connect to).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?", re.ASCII | re.IGNORECASE)
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII | re.IGNORECASE)
MAX_HOST_NAME = 253
MAX_LABEL = 63


@dataclass(frozen=True)
class EgressPolicy:
    """``allowed``: networks let through although not public (e.g. loopback on the local stack)."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_text(cls, text: str) -> EgressPolicy:
        """Parse a comma-separated list of networks, e.g. ``127.0.0.0/8,::1/128``."""
        networks = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"invalid network {part!r} in the allowed callback networks") from exc
        return cls(tuple(networks))

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why a connection to ``address`` is refused, or None when it is allowed."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if any(ip in net for net in self.allowed):
            return None
        for embedded in _embedded_ipv4(ip):
            if any(embedded in net for net in self.allowed):
                return None
            reason = _refusal_of(embedded)
            if reason:
                return f"{ip} embeds {embedded}, {reason}"
        return _refusal_of(ip)

    def allows_loopback(self) -> bool:
        return any(ipaddress.ip_address("127.0.0.1") in net for net in self.allowed)


def _refusal_of(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_link_local or any(ip in net for net in _CLOUD_METADATA):
        return f"{ip} is a link-local address (where cloud metadata lives)"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if not ip.is_global or any(ip in net for net in _not_public()):
        return f"{ip} is not a public address"
    return None


@cache
def _not_public() -> tuple[IPNetwork, ...]:
    """requests-hardened's ranges beyond Python's (loaded when first needed: it imports requests,
    which the api function's cold start does without)."""
    from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES  # noqa: PLC0415

    return tuple(EXTRA_BLOCKED_NET_RANGES)


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself, in any notation a resolver accepts (``127.1``,
    ``0x7f.0.0.1``, ``2130706433``, ``[::ffff:127.0.0.1]``), or None for a DNS name."""
    host = host.rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_callback_url(url: object, policy: EgressPolicy, max_length: int, field: str = "callback") -> str:
    """Check what can be checked of a callback URL without resolving it; return it unchanged."""
    if not isinstance(url, str):
        raise InvalidRequest(f"{field} must be a string holding an absolute http(s) URL")
    if len(url) > max_length:
        raise InvalidRequest(f"{field} is {len(url)} characters long; the limit is {max_length}")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidRequest(_unencoded(url, field))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"{field} {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"{field} {url!r} must be an absolute http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise InvalidRequest(f"{field} {url!r} has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidRequest(f"{field} {url!r} must not carry credentials (user:password@)")
    if port == 0:
        raise InvalidRequest(f"{field} {url!r} has port 0")
    problem = host_problem(parts.netloc)
    if problem:
        raise InvalidRequest(f"{field} {url!r} has an invalid host: {problem}")
    _check_host(host, parts, policy, field, url)
    return url


def host_problem(netloc: str) -> str | None:
    """What is wrong with the host of a URL's ``host[:port]``, or None.

    An IP literal in brackets must be an IPv6 address (RFC 3986; no zone identifier, no IPvFuture).
    A name is ASCII (internationalised names as IDNA A-labels, ``xn--``, valid by IDNA 2008),
    at most 253 characters without its optional final dot, in labels of 1 to 63 letters, digits,
    hyphens and underscores, neither starting nor ending with a hyphen; no percent-encoding. A name
    ending in a number must be an IPv4 address (in any notation a resolver accepts).
    """
    if netloc.startswith("["):
        literal, _, rest = netloc[1:].partition("]")
        if rest and not rest.startswith(":"):
            return f"{rest!r} follows the IP literal [{literal}]"
        if literal[:1] in ("v", "V"):
            return f"[{literal}] is an IPvFuture literal, which cannot be called: use an IPv6 address or a name"
        if "%" in literal:
            return f"[{literal}] has a zone identifier, which means nothing outside this machine"
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return f"[{literal}] is not an IPv6 address"
        return None
    host = netloc.rpartition(":")[0] if ":" in netloc else netloc
    if "%" in host:
        return f"{host!r} is percent-encoded, which a host never is"
    name = host.removesuffix(".")
    if not name:
        return "it is empty"
    if len(name) > MAX_HOST_NAME:
        return f"the name is {len(name)} characters long; the limit is {MAX_HOST_NAME}"
    labels = name.split(".")
    if _NUMBER.fullmatch(labels[-1]):
        return None if literal_address(name) else f"{host!r} ends in a number but is not an IPv4 address"
    for label in labels:
        problem = _label_problem(label)
        if problem:
            return problem
    return None


def _label_problem(label: str) -> str | None:
    if not label:
        return "it has an empty label (a leading dot, or two dots in a row)"
    if len(label) > MAX_LABEL:
        return f"label {label[:16]!r}... is {len(label)} characters long; the limit is {MAX_LABEL}"
    if not _LABEL.fullmatch(label):
        return (
            f"label {label!r} must be letters, digits, '-' and '_', and neither start nor end with '-' "
            "(internationalised names are written as IDNA A-labels, xn--...)"
        )
    if label[:4].lower() == "xn--":
        import idna  # noqa: PLC0415 (rare: kept out of the api function's cold start)

        try:
            if idna.encode(idna.decode(label)).decode() != label.lower():
                return f"label {label!r} is not the canonical form of an IDNA A-label"
        except UnicodeError as exc:
            return f"label {label!r} is not a valid IDNA A-label ({exc})"
    return None


def _unencoded(url: str, field: str) -> str:
    """The refusal of a URL holding characters a URL cannot hold as such. A non-ASCII host is named
    with its A-label form: a host is never percent-encoded."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if host and not host.isascii() and not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in host):
        import idna  # noqa: PLC0415 (rare: kept out of the api function's cold start)

        try:
            ascii_host = idna.encode(host, uts46=True).decode()
        except UnicodeError as exc:
            return f"{field} {url!r}: host {host!r} is not a valid internationalised domain name ({exc})"
        return f"{field} {url!r}: write the host {host!r} in ASCII, as its IDNA A-labels: {ascii_host!r}"
    return f"{field} {url!r} contains spaces, control or non-ASCII characters; percent-encode them"


def _check_host(host: str, parts: SplitResult, policy: EgressPolicy, field: str, url: str) -> None:
    address = literal_address(host)
    if address is not None:
        reason = policy.refusal(address)
        if reason:
            raise InvalidRequest(f"{field} {url!r} is refused: {reason}; callbacks may only reach public addresses")
        return
    name = host.rstrip(".").lower()
    if (name == "localhost" or name.endswith(".localhost")) and not policy.allows_loopback():
        raise InvalidRequest(
            f"{field} {url!r} is refused: localhost is a loopback name; callbacks may only reach public addresses"
        )
