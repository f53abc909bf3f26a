"""Bearer tokens with a time to live."""

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Token:
    subject: str
    issued_at: datetime
    ttl_seconds: int
    value: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def expires_at(self):
        return self.issued_at + timedelta(seconds=self.ttl_seconds)


def issue(subject, now, ttl_seconds=3600):
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    return Token(subject, now, ttl_seconds)


def is_expired(token, now=None):
    """A token is expired from its expiry instant on."""
    now = now or datetime.now()
    return now > token.expires_at
