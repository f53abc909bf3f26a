"""Participant pseudonyms: the lake never stores a participant id, only a keyed hash of it."""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["PSEUDONYM", "pseudonym"]

PSEUDONYM = re.compile(r"p_[0-9a-f]{32}")


def pseudonym(participant_id: str, key: str) -> str:
    """`p_` + the first 32 hex digits of HMAC-SHA256(key, participant_id).

    Stable for a given key, so a participant's traces group together and `forget_participant`
    can find them; without the key, ids cannot be recovered or guessed from a list of names.
    """
    digest = hmac.new(key.encode("utf-8"), participant_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return "p_" + digest[:32]
