"""Upload grants: clients write a trace without holding bucket credentials.

`prt grant TRACE_ID` (run by someone who holds the credentials) issues an S3 presigned POST
policy that allows uploads only under `<inbox prefix>/<trace_id>/`, only objects up to
`max_bytes`, and only until it expires. The SDK (`TraceWriter(grant=...)`) and
`prt upload DIR --grant FILE` upload through it with plain HTTPS form posts.

The store enforces the policy (prefix, size, expiry, signature). A grant cannot read, list or
delete; it cannot stop an object from being overwritten either, which the pipeline notices (a
changed chunk breaks the chain; two chunks with one seq are a chunk_conflict).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from client.storage import as_storage_error
from schemas.errors import ConfigError, InvalidInput
from schemas.types import TRACE_ID_RE

__all__ = ["GrantUploader", "issue_grant", "load_grant"]

GRANT_VERSION = 1


def _bucket_prefix(inbox: str) -> tuple[str, str]:
    if not inbox.startswith("s3://"):
        raise ConfigError(f"grants need an s3:// inbox, not {inbox!r}: a local folder has no access control to delegate")
    bucket, _, prefix = inbox.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def issue_grant(inbox: str, trace_id: str, *, expires_s: int = 3600, max_bytes: int = 512 * 2**20) -> dict[str, Any]:
    """A presigned POST policy for `<inbox>/<trace_id>/`, valid for `expires_s` seconds."""
    import botocore.session

    if not TRACE_ID_RE.match(trace_id):
        raise InvalidInput("TRACE_ID", f"{trace_id!r} is not a valid trace id (^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$)")
    bucket, prefix = _bucket_prefix(inbox)
    key_prefix = f"{prefix}/{trace_id}/" if prefix else f"{trace_id}/"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    client = botocore.session.get_session().create_client("s3", endpoint_url=endpoint, region_name=region)
    post = client.generate_presigned_post(
        bucket,
        key_prefix + "${filename}",
        Conditions=[["starts-with", "$key", key_prefix], ["content-length-range", 0, max_bytes]],
        ExpiresIn=expires_s,
    )
    return {
        "version": GRANT_VERSION,
        "trace_id": trace_id,
        "url": post["url"],
        "fields": {k: v for k, v in post["fields"].items() if k != "key"},
        "key_prefix": key_prefix,
        "max_bytes": max_bytes,
        "expires_at": int(time.time()) + expires_s,
    }


def load_grant(path_or_json: str) -> dict[str, Any]:
    text = path_or_json if path_or_json.lstrip().startswith("{") else Path(path_or_json).read_text(encoding="utf-8")
    grant = json.loads(text)
    if grant.get("version") != GRANT_VERSION or not {"url", "fields", "key_prefix", "trace_id"} <= set(grant):
        raise InvalidInput("grant", "is not an upload grant from `prt grant`")
    return grant


class GrantUploader:
    """put(key, data) through a grant; `key` is `<trace_id>/...` as in the inbox protocol."""

    def __init__(self, grant: dict[str, Any], *, timeout_s: float = 60):
        self.grant = grant
        self.timeout_s = timeout_s

    def put(self, key: str, data: bytes) -> bool:
        import requests

        g = self.grant
        if not key.startswith(g["trace_id"] + "/"):
            raise InvalidInput("key", f"{key} is outside the granted trace {g['trace_id']}")
        if time.time() > g.get("expires_at", float("inf")):
            raise InvalidInput("grant", f"the grant for {g['trace_id']} expired; ask for a new one (prt grant)")
        if len(data) > g.get("max_bytes", float("inf")):
            raise InvalidInput("key", f"{key} is {len(data)} bytes, over the grant's {g['max_bytes']}-byte cap")
        fields = {**g["fields"], "key": g["key_prefix"] + key.split("/", 1)[1]}
        try:
            r = requests.post(g["url"], data=fields, files={"file": (key.rsplit("/", 1)[-1], data)}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise as_storage_error(f"upload of {key} through its grant", exc) from exc
        if r.status_code >= 400:
            raise InvalidInput("grant", f"the store refused {key}: HTTP {r.status_code} {r.text[:200]}")
        return True
