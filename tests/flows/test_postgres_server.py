"""The scale-out path: a Prefect server on PostgreSQL (Debian's postgresql package) runs the pipeline.

Starts a throw-away PostgreSQL cluster on a free port, a Prefect server using it, runs `prt ingest`
against that server, and checks that the run is recorded in PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from client.upload import find_trace_dirs, upload_trace_dir
from tests.conftest import EXAMPLES, REPO, _free_port, wait_for_http


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres(tmp_path):
    bin_dir = _pg_bin()
    if bin_dir is None or shutil.which("runuser") is None:
        if os.environ.get("PRT_REQUIRE_DOCKER") == "1":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        pytest.skip("PostgreSQL is not installed")
    base = Path(tempfile.mkdtemp(prefix="prt-pg-"))  # pytest's tmp folders are private to root
    os.chmod(base, 0o755)
    data = base / "pgdata"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    port = _free_port()

    def as_postgres(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=True, timeout=120)

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
        "-l",
        str(data / "log"),
        "-w",
        "start",
    )
    try:
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "prefect")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", bin_dir, port
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_prefect_server_on_postgres_runs_the_pipeline(postgres, tmp_path):
    url, bin_dir, pg_port = postgres
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_http(api + "/health", server, timeout_s=120, what="prefect server on PostgreSQL")
        inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
        for d in find_trace_dirs(EXAMPLES):
            upload_trace_dir(d, inbox)
        run_env = {**os.environ, "PREFECT_API_URL": api, "DO_NOT_TRACK": "1"}
        out = subprocess.run(
            [sys.executable, "-m", "client.cli", "ingest", "--inbox", inbox, "--lake", lake],
            cwd=REPO,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "3 ingested" in out.stdout
        rows = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(pg_port), "-d", "prefect", "-tAc",
             "select count(*) from flow_run fr join flow f on f.id = fr.flow_id where f.name = 'ingest-inbox' and fr.state_type = 'COMPLETED'"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert rows == "1"  # the run lives in PostgreSQL, not in a SQLite file
        assert not list((tmp_path / "prefect-home").glob("*.db"))
    finally:
        server.terminate()
        server.wait(timeout=30)
