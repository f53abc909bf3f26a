"""Shared fixtures: a real S3 endpoint (moto's server) and storage roots parametrized over it and a folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "traces"
EXAMPLE_IDS = ("example-simple-fix", "example-multi-file-fix", "example-failed-attempt")

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port, with the AWS_* variables pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address
    endpoint = f"http://{host}:{port}"
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
    server.stop()
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
