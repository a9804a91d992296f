"""Header values at rest: encrypted under callme's headers key before they are stored.

DynamoDB encrypts every table at rest, but anyone allowed to read the table (a read-only role, the
console, an export or a restored backup) reads it in clear. A task's ``headers`` are secrets, so
their values are also encrypted by callme itself, with a key kept apart from the table (in AWS a
Secrets Manager secret only the two functions may read; locally a file in the state folder). Their
names stay readable: answers show them.

The cipher is AES-SIV (RFC 5297, from the ``cryptography`` package): authenticated, and
deterministic, so that equal headers of one task seal to equal text and definitions still compare
(rescheduling by name collapses entries with equal definitions). What that reveals to a reader of
the table is only which entries of a task share their header values. The associated data binds the
sealed values to the task's name and to the header names: they cannot be moved to another task or
another header unnoticed.

The key document is a key, or ``{"current": "...", "previous": "..."}`` like the signing secret's:
``current`` seals, both open, so a key can be replaced while entries sealed with the old one wait.
Each key is any string of at least 32 characters; HKDF-SHA256 turns it into AES-SIV's 512 bits.
``cryptography`` is imported when a key is first used, so functions that never see headers never
load it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .headers import Headers, HeaderSet, SealedHeaders

FORMAT = "v1"
MIN_KEY_LENGTH = 32
_KEY_INFO = b"callme headers AES-SIV v1"
_KEY_ID_LENGTH = 8  # hex digits naming the key a value was sealed with


class SealingError(Exception):
    """Header values could not be sealed or opened; ``message`` says why, never what they are."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HeaderVault:
    """Seals header values for storage and opens them for the call.

    ``document`` returns the key document, or None when none is configured (then headers can be
    neither stored nor sent); it is asked each time, so a rotation reaches a running function as
    soon as its source (e.g. Powertools' cache) gives the new document.
    """

    def __init__(self, document: Callable[[], str | None]) -> None:
        self._document = document

    def seal(self, task_name: str, headers: Headers) -> SealedHeaders:
        """``headers`` as stored: sealed with the current key (already sealed ones are kept as they are)."""
        if isinstance(headers, SealedHeaders):
            return headers
        key_id, cipher = self._ciphers()[0]
        values = json.dumps([value for _, value in headers.pairs]).encode()
        sealed = cipher.encrypt(values, _associated(task_name, headers.names))
        text = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        return SealedHeaders(headers.names, f"{FORMAT}.{key_id}.{text}")

    def reveal(self, task_name: str, headers: Headers) -> HeaderSet:
        """``headers`` in clear, to be sent. SealingError if they cannot be opened."""
        if isinstance(headers, HeaderSet):
            return headers
        version, _, rest = headers.sealed.partition(".")
        key_id, _, text = rest.partition(".")
        if version != FORMAT or not text:
            raise SealingError("the stored header values are not in a form callme knows")
        cipher = dict(self._ciphers()).get(key_id)
        if cipher is None:
            raise SealingError(
                f"the header values were sealed with key {key_id}, which the headers key document no longer holds"
            )
        try:
            values = json.loads(cipher.decrypt(_unpadded_b64(text), _associated(task_name, headers.names)))
        except Exception as exc:  # cryptography's InvalidTag, or damaged text
            reason = type(exc).__name__
            raise SealingError(f"the stored header values do not open with key {key_id} ({reason})") from None
        if not isinstance(values, list) or len(values) != len(headers.names):
            raise SealingError("the stored header values do not match their names")
        return HeaderSet(tuple(zip(headers.names, values, strict=True)))

    def _ciphers(self) -> list[tuple[str, Any]]:
        document = self._document()
        if not document:
            raise SealingError("this deployment has no headers key (CALLME_HEADERS_KEY or CALLME_HEADERS_KEY_ID)")
        try:
            return _keys(document)
        except ValueError as exc:
            raise SealingError(str(exc)) from None


def _associated(task_name: str, names: tuple[str, ...]) -> list[bytes]:
    return [_KEY_INFO, task_name.encode(), "\n".join(names).encode()]


def _unpadded_b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealingError("the stored header values are damaged") from None


def new_key() -> str:
    """A fresh key, as the local stack keeps it in its state folder."""
    import secrets  # noqa: PLC0415

    return secrets.token_urlsafe(48)


@lru_cache(maxsize=8)
def _keys(document: str) -> list[tuple[str, Any]]:
    """The document's keys as (key id, AES-SIV cipher), the current one first."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 (only when headers are used)
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV  # noqa: PLC0415
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    found = []
    for secret in key_texts(document):
        material = HKDF(hashes.SHA256(), 64, None, _KEY_INFO).derive(secret.encode())
        key_id = hashlib.sha256(b"callme headers key id:" + material).hexdigest()[:_KEY_ID_LENGTH]
        found.append((key_id, AESSIV(material)))
    return found


def key_texts(document: str) -> list[str]:
    """The keys a headers key document holds, the current one first. ValueError when it holds none,
    or a key shorter than MIN_KEY_LENGTH."""
    text = document.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError("the headers key document is not valid JSON") from None
        keys = [parsed.get("current", ""), parsed.get("previous", "")] if isinstance(parsed, dict) else [None]
    else:
        keys = [text]
    if not all(isinstance(key, str) for key in keys):
        raise ValueError("the headers key document's current and previous keys must be strings")
    found = [key.strip() for key in keys if key and key.strip()]
    if not found:
        raise ValueError("the headers key document holds no key")
    if any(len(key) < MIN_KEY_LENGTH for key in found):
        raise ValueError(f"a headers key must be at least {MIN_KEY_LENGTH} characters long")
    return found
