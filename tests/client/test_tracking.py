"""`prt` runs jobs as Prefect flow runs only when a Prefect API is configured (or --track), and
finds that configuration where Prefect itself does, without importing Prefect."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from client.tracking import prefect_api_url
from tests.conftest import EXAMPLES, REPO

URL = "http://127.0.0.1:4999/api"
_PREFECT_SAYS = "from prefect.settings import get_current_settings as s; print(s().api.url)"


def _clean_env(home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_PROFILE", "PREFECT_TEST"))}
    return {**env, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize(
    ("where", "content"),
    [
        ("nowhere", None),
        (".env", f"PREFECT_API_URL={URL}\n"),
        ("prefect.toml", f'[api]\nurl = "{URL}"\n'),
        ("pyproject.toml", f'[tool.prefect.api]\nurl = "{URL}"\n'),
        ("profiles.toml", f'active = "team"\n[profiles.team]\nPREFECT_API_URL = "{URL}"\n'),
        ("profiles.toml", f'active = "local"\n[profiles.local]\n[profiles.team]\nPREFECT_API_URL = "{URL}"\n'),
    ],
)
def test_the_api_url_is_found_where_prefect_finds_it(tmp_path, monkeypatch, where, content):
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir(), cwd.mkdir()
    if content is not None:
        ((home if where == "profiles.toml" else cwd) / where).write_text(content)
    env = _clean_env(home)
    prefect = subprocess.run([sys.executable, "-c", _PREFECT_SAYS], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert prefect.returncode == 0, prefect.stderr[-2000:]
    monkeypatch.chdir(cwd)
    for k in set(os.environ) - set(env):
        monkeypatch.delenv(k)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    assert str(prefect_api_url()) == prefect.stdout.strip()


def test_the_environment_wins_and_an_empty_value_means_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prefect.toml").write_text(f'[api]\nurl = "{URL}"\n')
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    assert prefect_api_url() == "http://elsewhere:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", "")
    assert prefect_api_url() is None


_RUN = """
import sys
from client.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("prefect imported:", "prefect" in sys.modules)
"""


def _prt(env, *args, cwd=REPO):
    return subprocess.run([sys.executable, "-c", _RUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_without_a_server_the_jobs_run_as_plain_python(tmp_path):
    from lake import Lake

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    env = _clean_env(tmp_path / "home")
    out = _prt(env, "upload", str(EXAMPLES), "--inbox", inbox)
    assert out.returncode == 0, out.stderr[-2000:]
    out = _prt(env, "ingest", "--inbox", inbox, "--lake", lake)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 ingested (50 events)" in out.stdout and "prefect imported: False" in out.stdout
    assert "| INFO    | prt.ingest - ingested 3 traces (50 events)" in out.stderr  # progress, as Prefect's log would show it
    out = _prt(env, "judge", "--lake", lake)
    assert out.returncode == 0 and "3 scored" in out.stdout and "prefect imported: False" in out.stdout, out.stderr[-2000:]
    traces = Lake(lake).traces().collect()
    assert traces.height == 3 and set(traces["pipeline_run_id"]) == {"local"}


def test_with_a_server_or_track_the_jobs_are_flow_runs(tmp_path, cli_env, prefect_server):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    out = _prt(cli_env, "upload", str(EXAMPLES), "--inbox", inbox)
    assert out.returncode == 0, out.stderr[-2000:]
    out = _prt(cli_env, "ingest", "--inbox", inbox, "--lake", lake)
    assert out.returncode == 0 and "prefect imported: True" in out.stdout, out.stderr[-2000:]
    out = _prt(cli_env, "--no-track", "judge", "--lake", lake)
    assert out.returncode == 0 and "prefect imported: False" in out.stdout, out.stderr[-2000:]
    # --track with the API in a profile rather than the environment: found there, and the run is on that server
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text(f'active = "team"\n[profiles.team]\nPREFECT_API_URL = "{prefect_server}"\n')
    out = _prt(_clean_env(home), "--track", "judge", "--lake", lake, "--judge", "heuristic")
    assert out.returncode == 0 and "prefect imported: True" in out.stdout, out.stderr[-2000:]
    flows = {f["id"]: f["name"] for f in httpx.post(f"{prefect_server}/flows/filter", json={}).json()}
    runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={}).json()
    ours = sorted(flows[r["flow_id"]] for r in runs if r["parameters"].get("lake") == lake)
    assert ours == ["ingest-inbox", "judge-traces"]  # the --no-track run is not among them
