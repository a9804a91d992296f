"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Each callback carries ``webhook-id`` (stable across the retries of an entry, so receivers can
deduplicate), ``webhook-timestamp`` and ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
``id.timestamp.body`` under a ``whsec_`` key. During a key rotation both keys sign, and the header
holds both signatures separated by a space, as the specification allows.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def normalise(secret: str) -> str:
    """Accept ``whsec_<base64>`` or bare base64 (the form AWS Secrets Manager generates)."""
    secret = secret.strip()
    key = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        if not base64.b64decode(key + "=" * (-len(key) % 4), validate=True):
            raise ValueError
    except ValueError:
        raise ValueError("a signing secret must be whsec_ followed by base64") from None
    return PREFIX + key


@dataclass(frozen=True)
class Signer:
    """Signs with every key it holds: the current one first, then any being rotated out."""

    secrets: tuple[str, ...]

    @classmethod
    def from_secret_document(cls, text: str) -> Signer:
        """A plain secret, or the JSON document kept in Secrets Manager:
        ``{"current": "...", "previous": "..."}`` (``previous`` empty outside a rotation)."""
        text = text.strip()
        if text.startswith("{"):
            document = json.loads(text)
            keys = [document.get("current", ""), document.get("previous", "")]
        else:
            keys = [text]
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("the signing secret document's current and previous keys must be strings")
        found = tuple(normalise(k) for k in keys if k)
        if not found:
            raise ValueError("the signing secret document holds no key")
        return cls(found)

    def headers(self, message_id: str, timestamp: int, body: str) -> dict[str, str]:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
        signatures = " ".join(Webhook(s).sign(message_id, moment, body) for s in self.secrets)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
