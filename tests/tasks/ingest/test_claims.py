"""claim_batch: a transient storage error is retried (a new batch), anything else is not; and how a claim's owner is known dead."""

from __future__ import annotations

import logging
import subprocess
import time

import pytest

from client.storage import fs_for
from tasks.ingest.claims import Claims, claim_batch, process_started


class FlakyClaims(Claims):
    """Real claims on a local lake, whose first `fail` open_batch calls raise `error` before writing."""

    def __init__(self, root: str, error: Exception, fail: int = 1):
        fs, lake_root = fs_for(root)
        super().__init__(fs, lake_root, lease_s=60)
        self.error, self.fail, self.calls = error, fail, 0

    def open_batch(self, run_id, trace_ids, **kw):
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        return super().open_batch(run_id, trace_ids, **kw)


def test_transient_error_is_retried(tmp_path, caplog):
    claims = FlakyClaims(str(tmp_path / "lake"), ConnectionError("connection reset"))
    with caplog.at_level(logging.WARNING, logger="tasks.ingest.claims"):
        info, won = claim_batch(claims, "run-1", ["t-1", "t-2"], retry_after=[0.01])
    assert claims.calls == 2 and won == ["t-1", "t-2"] and claims.members(info) == ["t-1", "t-2"]
    assert "claiming a batch of 2 traces failed (connection reset); retrying in 0.01 s" in caplog.text


def test_retries_run_out(tmp_path):
    claims = FlakyClaims(str(tmp_path / "lake"), TimeoutError("slow store"), fail=3)
    with pytest.raises(TimeoutError, match="slow store"):
        claim_batch(claims, "run-1", ["t-1"], retry_after=[0.01, 0.01])
    assert claims.calls == 3 and claims.claimed() == set()


def test_other_errors_are_not_retried(tmp_path):
    claims = FlakyClaims(str(tmp_path / "lake"), PermissionError("read-only lake"))
    with pytest.raises(PermissionError, match="read-only lake"):
        claim_batch(claims, "run-1", ["t-1"], retry_after=[0.01])
    assert claims.calls == 1


def test_a_zombie_process_counts_as_gone():
    """A killed process that its parent has not reaped yet is dead all the same: a worker pool's
    owner watch and a claim's owner check must both see it so."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert process_started(child.pid) != ""
        child.kill()
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(child.pid) == "Z" and process_started(child.pid) == ""
    finally:
        child.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
