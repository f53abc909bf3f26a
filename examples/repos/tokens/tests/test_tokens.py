from datetime import UTC, datetime, timedelta

import pytest
from auth.tokens import is_expired, issue

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_fresh_token_is_valid():
    token = issue("alice", T0, ttl_seconds=60)
    assert not is_expired(token, now=T0 + timedelta(seconds=10))


def test_token_expires_at_boundary():
    token = issue("alice", T0, ttl_seconds=60)
    assert is_expired(token, now=token.expires_at)


def test_default_now_is_timezone_aware():
    token = issue("alice", datetime.now(UTC), ttl_seconds=60)
    assert not is_expired(token)


def test_ttl_must_be_positive():
    with pytest.raises(ValueError):
        issue("alice", T0, ttl_seconds=0)
