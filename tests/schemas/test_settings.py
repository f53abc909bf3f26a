"""Settings that are worked out, not just read: PRT_WORKERS=auto."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from schemas.settings import IngestSettings
from tests.conftest import REPO


def test_workers_default_to_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("PRT_WORKERS", raising=False)
    assert IngestSettings().workers == len(os.sched_getaffinity(0))
    monkeypatch.setenv("PRT_WORKERS", "3")
    assert IngestSettings().workers == 3
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        IngestSettings(workers=0)


def test_auto_follows_the_cpu_affinity():
    one_core = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", "from schemas.settings import IngestSettings; print(IngestSettings().workers)"],
        cwd=REPO, env={**os.environ, "PRT_WORKERS": "auto"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert one_core.returncode == 0, one_core.stderr
    assert one_core.stdout.strip() == "1"
