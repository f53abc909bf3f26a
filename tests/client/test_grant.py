"""Upload grants: a presigned POST policy limited to one trace's prefix and a size cap, used by the
SDK and `prt upload`, against a real S3 endpoint (moto's server).

moto accepts presigned POSTs but does not enforce their policy conditions, so the limits are
checked in the signed policy itself (what AWS S3 enforces) and in the uploader."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest

from client.grant import GrantUploader, issue_grant
from client.upload import upload_trace_dir
from client.writer import TraceWriter
from schemas.errors import ConfigError, InvalidInput
from tests.conftest import EXAMPLES, REPO, _new_bucket
from tests.support.tracegen import SNAPSHOT, manifest, objects


@pytest.fixture
def inbox(s3_endpoint):
    return f"s3://{_new_bucket()}/inbox"


def test_grant_policy_is_limited_to_the_trace_and_a_size_cap(inbox):
    grant = issue_grant(inbox, "t-granted", expires_s=600, max_bytes=1234)
    policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
    conditions = policy["conditions"]
    assert ["starts-with", "$key", "inbox/t-granted/"] in conditions
    assert ["content-length-range", 0, 1234] in conditions
    assert {"bucket": inbox.split("/")[2]} in conditions
    assert grant["key_prefix"] == "inbox/t-granted/" and grant["expires_at"] > time.time() + 500
    assert {"policy", "signature"} <= set(grant["fields"]) or "x-amz-signature" in grant["fields"]  # signed by the issuer


def test_sdk_writes_a_whole_trace_through_a_grant(inbox):
    grant = issue_grant(inbox, "t-granted")
    clock = iter(range(1_760_000_000, 1_760_000_100))
    with TraceWriter(
        None, manifest("t-granted"), grant=grant, snapshot=SNAPSHOT, chunk_max_events=1, clock=lambda: float(next(clock))
    ) as w:
        w.note("plan", "fix it")
        w.cmd_run("pytest", exit_code=1, duration_s=0.1, stdout="F")
    written = objects(inbox, "t-granted")
    assert {"manifest.json", "complete.json"} <= set(written) and len([k for k in written if k.startswith("chunks/")]) == 2
    with pytest.raises(InvalidInput, match="grant is for trace 't-granted'"):
        TraceWriter(None, manifest("someone-else"), grant=grant, snapshot=SNAPSHOT)


def test_prt_upload_with_a_grant(inbox, tmp_path, cli_env):
    grant_file = tmp_path / "grant.json"
    made = subprocess.run([sys.executable, "-m", "client.cli", "grant", "example-simple-fix", "--inbox", inbox, "--out", str(grant_file)],
                          cwd=REPO, env=cli_env, capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    env = {k: v for k, v in cli_env.items() if not k.startswith("AWS_")}  # the uploader holds no credentials
    up = subprocess.run([sys.executable, "-m", "client.cli", "upload", str(EXAMPLES / "example-simple-fix"), "--grant", str(grant_file)],
                        cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert up.returncode == 0, up.stderr
    local = {
        p.relative_to(EXAMPLES / "example-simple-fix").as_posix(): p.read_bytes()
        for p in (EXAMPLES / "example-simple-fix").rglob("*")
        if p.is_file()
    }
    assert objects(inbox, "example-simple-fix") == local
    other = subprocess.run([sys.executable, "-m", "client.cli", "upload", str(EXAMPLES / "example-failed-attempt"), "--grant", str(grant_file)],
                           cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 2 and "outside the granted trace example-simple-fix" in other.stderr


def test_uploader_enforces_size_and_expiry(inbox):
    grant = issue_grant(inbox, "t-small", max_bytes=10)
    with pytest.raises(InvalidInput, match="over the grant's 10-byte cap"):
        GrantUploader(grant).put("t-small/manifest.json", b"x" * 11)
    expired = {**grant, "expires_at": time.time() - 1}
    with pytest.raises(InvalidInput, match="expired"):
        GrantUploader(expired).put("t-small/manifest.json", b"{}")


def test_grants_need_s3_and_a_valid_trace_id(tmp_path, inbox):
    with pytest.raises(ConfigError, match="grants need an s3:// inbox"):
        issue_grant(str(tmp_path), "t-1")
    with pytest.raises(InvalidInput, match="not a valid trace id"):
        issue_grant(inbox, "../escape")


def test_upload_trace_dir_through_put_keeps_complete_last(inbox):
    grant = issue_grant(inbox, "example-failed-attempt")
    order = []
    uploader = GrantUploader(grant)
    upload_trace_dir(EXAMPLES / "example-failed-attempt", put=lambda k, d: order.append(k) or uploader.put(k, d))
    assert order[-1].endswith("/complete.json")
