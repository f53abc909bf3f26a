"""flows.local_runs: `prt`'s flow runs skip Prefect heartbeats unless they are asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
from prefect import flow
from prefect.settings import get_current_settings
from flows import local_runs

@flow(name="local-runs-probe")
def probe():
    return get_current_settings().flows.heartbeat_frequency

outside = probe()
with local_runs():
    print(outside, probe())
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "180 None"),  # Prefect's default, then none: the run's end waits for no heartbeat thread
        ({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"}, "60 60"),  # asked for: kept
    ],
)
def test_local_runs_skip_heartbeats_unless_asked(cli_env, env, expected):
    # A fresh process: the suite itself runs inside local_runs (conftest).
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env={**cli_env, **env}, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == expected.split()
