"""The documented limits on what a client may ask for. Each is enforced with a clear 4xx."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 128 * 1024
    max_payload_bytes: int = 64 * 1024
    max_url_length: int = 2048
    max_retry: int = 10
    max_max_delay: int = 1440  # minutes: a call may be at most one day late
    max_ahead_seconds: int = 1826 * DAY  # five years
    default_page_size: int = 100
    max_page_size: int = 1000
    retention_seconds: int = 30 * DAY  # finished entries are kept this long
