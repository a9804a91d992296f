"""A callback's own request headers (``headers``): what a client may set, and how they are shown.

A task may carry up to ``MAX_HEADERS`` extra headers (``Authorization`` for its receiver, a tenant
id ...), sent on every attempt. Their values are secrets: no answer, log line or event shows them
(``masked``), and storage keeps them encrypted (callme.sealing). Names that would let a task change
how callme frames, addresses or signs its request are refused, whatever their case; the caller also
sets its own headers after these, so that none could slip through.

Two forms: ``HeaderSet`` holds the values in clear, from validation until the entry is stored (and
in the caller, just before the request is made); ``SealedHeaders`` holds them encrypted, as stored.
Both show their names; neither shows a value in its ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidRequest

MAX_HEADERS = 20
MAX_HEADER_BYTES = 8 * 1024  # names and values added up
MASK = "***"  # what answers show for every value: no length, no prefix

# RFC 9110 5.1: a field name is a token.
NAME_SYMBOLS = "!#$%&'*+-.^_`|~"
NAME_PATTERN_TEXT = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_NAME = re.compile(NAME_PATTERN_TEXT)
# RFC 9110 5.5: visible ASCII, with spaces and tabs inside; callme takes no obs-text (non-ASCII).
_VALUE_CHARACTER = re.compile(r"[\t\x20-\x7e]")
# The same rule as one pattern, for the OpenAPI document (the checks below name what is wrong).
VALUE_PATTERN_TEXT = r"^(?:[!-~](?:[\t -~]*[!-~])?)?$"

# Lower-case names callme sets itself or that belong to the connection, not the request (RFC 9110
# 7.6.1 and 7.8, RFC 9112 6 and 9.6), with the reason given to the client.
_FRAMING = "it frames the request, which callme does from the payload"
_CONNECTION = "it belongs to the connection (a hop-by-hop header), which callme manages"
FORBIDDEN_NAMES: dict[str, str] = {
    "host": "it is the callback URL's host",
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
    "expect": _FRAMING,
    "trailer": _FRAMING,
    "te": _CONNECTION,
    "connection": _CONNECTION,
    "keep-alive": _CONNECTION,
    "upgrade": _CONNECTION,
    "http2-settings": _CONNECTION,
    "accept-encoding": "callme asks for answers as sent, so that what it records of them stays readable",
}
FORBIDDEN_PREFIXES: dict[str, str] = {
    "proxy-": _CONNECTION,
    "webhook-": "callme signs every call with these (Standard Webhooks)",
    "callme-": "callme sets these on every call",
}


@dataclass(frozen=True)
class HeaderSet:
    """Headers with their values in clear, in the order given."""

    pairs: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.pairs)

    def __repr__(self) -> str:
        return f"HeaderSet(names={self.names!r})"


@dataclass(frozen=True)
class SealedHeaders:
    """Headers as stored: their names, and their values encrypted together (callme.sealing)."""

    names: tuple[str, ...]
    sealed: str

    def __repr__(self) -> str:
        return f"SealedHeaders(names={self.names!r})"


Headers = HeaderSet | SealedHeaders


def masked(headers: Headers | None) -> dict[str, str]:
    """What answers, logs and events show of ``headers``: every name, no value."""
    return {name: MASK for name in (headers.names if headers else ())}


def refusal(name: str) -> str | None:
    """Why a client may not set the header ``name`` (any case), or None when it may."""
    lower = name.lower()
    if lower in FORBIDDEN_NAMES:
        return FORBIDDEN_NAMES[lower]
    return next((why for prefix, why in FORBIDDEN_PREFIXES.items() if lower.startswith(prefix)), None)


def check_headers(value: Mapping[str, str], field: str = "headers") -> HeaderSet | None:
    """The headers a client gave (names to string values), checked; None when there are none."""
    if len(value) > MAX_HEADERS:
        raise InvalidRequest(f"{field} holds {len(value)} headers; at most {MAX_HEADERS}")
    seen: dict[str, str] = {}
    size = 0
    for name, text in value.items():
        _check_name(name, field)
        if name.lower() in seen:
            raise InvalidRequest(
                f"{field}: {seen[name.lower()]!r} and {name!r} are the same header (names are case-insensitive); "
                f"give it once"
            )
        seen[name.lower()] = name
        _check_value(name, text, field)
        size += len(name) + len(text)
    if size > MAX_HEADER_BYTES:
        raise InvalidRequest(f"{field} take {size} bytes (names and values added up); at most {MAX_HEADER_BYTES}")
    return HeaderSet(tuple(value.items())) if value else None


def _check_name(name: str, field: str) -> None:
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 100 else name[:100] + "..."
        raise InvalidRequest(f"{field}: {shown!r} is not a valid header name: use letters, digits and {NAME_SYMBOLS}")
    why = refusal(name)
    if why:
        raise InvalidRequest(f"{field}: {name!r} cannot be set: {why}")


def _check_value(name: str, text: str, field: str) -> None:
    for character in text:
        if not _VALUE_CHARACTER.fullmatch(character):
            raise InvalidRequest(f"{field}: the value of {name!r} holds {_describe(character)}; {_VALUE_RULE}")
    if text != text.strip(" \t"):
        raise InvalidRequest(
            f"{field}: the value of {name!r} starts or ends with white space, which HTTP drops (RFC 9110 5.5)"
        )


_VALUE_RULE = "a header value is printable ASCII, spaces and tabs (encode anything else, e.g. in base64)"
_NAMED_CHARACTERS = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL character"}


def _describe(character: str) -> str:
    """A character refused in a value, named without echoing it (the value is a secret)."""
    if character in _NAMED_CHARACTERS:
        return _NAMED_CHARACTERS[character]
    if ord(character) < 0x20 or ord(character) == 0x7F:
        return f"a control character (U+{ord(character):04X})"
    return f"a non-ASCII character (U+{ord(character):04X})"
