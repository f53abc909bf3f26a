"""Shared fixtures: a real S3 endpoint (moto's server) and storage roots parametrized over it and a folder."""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "traces"
EXAMPLE_IDS = ("example-simple-fix", "example-multi-file-fix", "example-failed-attempt")

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")  # the test server stops before the log flusher


def _own_random_for_background_threads() -> None:
    """Hypothesis warns ("Do not use the `random` module inside strategies") when the global
    `random` state changes while it draws an example, whichever thread changed it. Two threads
    that outlive the tests which start them did, now and then in the middle of a later property
    test: fsspec's IO loop (aiohttp shuffles its connection queues; the S3 tests) and Prefect's
    event loop (websockets draws its keep-alive ping payloads; the flow tests). Each library gets
    a `random.Random` of its own: the same calls, no state shared with the tests."""
    import aiohttp.connector
    import websockets.asyncio.connection

    for module in (aiohttp.connector, websockets.asyncio.connection):
        module.random = random.Random()


_own_random_for_background_threads()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in its own process on a free port, with the AWS_* variables pointing at it.

    Its own process, not a thread of this one: some delta-rs calls hold the GIL while they wait for
    the store, which would stall an in-process server (a real S3 endpoint is never in-process).
    """
    import subprocess
    import sys

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_http(endpoint + "/moto-api/", proc, timeout_s=60, what="moto server")
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    yield endpoint
    proc.terminate()
    proc.wait(timeout=20)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _new_bucket() -> str:
    import s3fs

    name = f"prt-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    fs.mkdir(name)
    return name


@pytest.fixture(params=[pytest.param("local", id="local"), pytest.param("s3", id="s3")])
def storage_url(request, tmp_path) -> Callable[[str], str]:
    """A factory of storage URLs (`url("inbox")`, `url("lake")`) on a local folder or a fresh S3 bucket."""
    if request.param == "local":
        return lambda name: str(tmp_path / name)
    request.getfixturevalue("s3_endpoint")
    bucket = _new_bucket()
    return lambda name: f"s3://{bucket}/{name}"


def wait_for_http(url: str, proc, *, timeout_s: float, what: str, log: Path | None = None) -> None:
    """Wait until `url` answers 200, while the server process `proc` lives; else RuntimeError
    (with the end of its log, when there is one)."""
    import time
    import urllib.request

    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what} did not start" + (f": {log.read_text()[-2000:]}" if log else ""))
        time.sleep(0.3)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[str]:
    """A real Prefect server (`prefect server start`) on a free port, with its own PREFECT_HOME and SQLite db."""
    import shutil
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_http(url + "/health", proc, timeout_s=90, what="prefect server", log=home / "server.log")
    except RuntimeError:
        log.close()
        raise
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session", autouse=True)
def _local_flow_runs() -> Iterator[None]:
    """Flows called in tests run as `prt` runs them (flows.local_runs): no heartbeat to wait for."""
    from flows import local_runs

    with local_runs():
        yield


@pytest.fixture
def prefect_api(prefect_server) -> Iterator[str]:
    """Run flows in this test against the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server


@pytest.fixture
def cli_env(prefect_server) -> dict[str, str]:
    """Environment for `prt` subprocesses: the session's Prefect server and the current AWS settings."""
    return {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


SANDBOX_PARAMS = [
    pytest.param(("namespace", None), id="namespace"),
    pytest.param(("docker", None), id="docker", marks=pytest.mark.docker),
    pytest.param(("docker", "runsc"), id="docker-gvisor", marks=pytest.mark.docker),
]


def sandbox_or_skip(name: str, settings):
    """The back-end, or a skip. With PRT_REQUIRE_DOCKER=1 (CI, after .ci/run built every back-end)
    an unavailable back-end is a failure instead."""
    from tasks.qa.sandbox import SANDBOXES

    why = SANDBOXES[name].available(settings)
    if why:
        if os.environ.get("PRT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"PRT_REQUIRE_DOCKER=1 but the {name} sandbox is unavailable: {why}")
        pytest.skip(f"{name} sandbox unavailable: {why}")
    return SANDBOXES[name](settings)


@pytest.fixture
def fake_openai(monkeypatch):
    """A local chat-completions server; OPENAI_BASE_URL and OPENAI_API_KEY point the SDK at it."""
    from tests.support.fake_openai import FakeOpenAI

    server = FakeOpenAI()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    yield server
    server.close()


@pytest.fixture(scope="session")
def examples_lake(tmp_path_factory, prefect_server) -> str:
    """A lake holding the three examples, ingested, verified (namespace sandbox) and scored (heuristic)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from client.upload import find_trace_dirs, upload_trace_dir
    from flows.process import process_inbox
    from schemas.settings import SandboxSettings

    base = tmp_path_factory.mktemp("examples-lake")
    inbox, lake = str(base / "inbox"), str(base / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    sandbox_or_skip("namespace", SandboxSettings())
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        process_inbox(inbox=inbox, lake=lake, sandbox="namespace")
    return lake
