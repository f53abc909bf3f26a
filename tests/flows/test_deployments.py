"""The deployments of prefect.yaml on a real Prefect server, run by a real worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from bench.generate import clone_examples
from client.upload import find_trace_dirs, upload_trace_dir
from flows.ingest import ingest_inbox
from lake import Lake
from tests.conftest import EXAMPLES, REPO

BIN = Path(sys.executable).parent


def _prefect(args: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, **kw)


async def _deployments():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {f"{(await client.read_flow(d.flow_id)).name}/{d.name}": d for d in await client.read_deployments()}


async def _pause_schedules(deployments):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for d in deployments.values():
            for s in await client.read_deployment_schedules(d.id):
                await client.update_deployment_schedule(d.id, s.id, active=False)


async def _wait(flow_run_id, timeout_s: float = 300):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deadline = time.time() + timeout_s
        while True:
            run = await client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            if time.time() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} still {run.state.name if run.state else '?'}")
            await asyncio.sleep(1)


def test_deploy_all_then_a_worker_runs_reprocess(tmp_path, prefect_api, cli_env):
    from prefect.deployments import run_deployment

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for d in find_trace_dirs(EXAMPLES):
        upload_trace_dir(d, inbox)
    ingest_inbox(inbox=inbox, lake=lake)
    env = {**cli_env, "PRT_PROJECT_DIR": str(REPO), "PRT_INBOX": inbox, "PRT_LAKE": lake, "PATH": f"{BIN}:{os.environ['PATH']}"}

    pool = _prefect(["work-pool", "create", "process", "--type", "process", "--overwrite"], env)
    assert pool.returncode == 0, pool.stderr
    deployed = _prefect(["--no-prompt", "deploy", "--all"], env)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

    deployments = asyncio.run(_deployments())
    assert {
        "process-inbox/process-inbox",
        "maintain-lake/maintain-lake",
        "reprocess/reprocess",
        "forget-participant/forget-participant",
        "serve-inbox/serve-inbox",
    } <= set(deployments)
    schema = deployments["reprocess/reprocess"].parameter_openapi_schema
    stages = schema["properties"]["stages"]
    assert stages["items"]["enum"] == ["validate", "regrade", "qa", "judge"]  # a typed form in the UI
    assert schema["properties"]["since"]["anyOf"][0]["format"] == "date"
    assert deployments["forget-participant/forget-participant"].parameter_openapi_schema["required"] == ["participant"]
    assert asyncio.run(_schedules(deployments)) == {
        "process-inbox/process-inbox": "interval",
        "maintain-lake/maintain-lake": "cron",
    }
    asyncio.run(_pause_schedules(deployments))  # only the run this test triggers should happen

    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "process"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        run = run_deployment(
            "reprocess/reprocess", parameters={"lake": lake, "stages": ["judge"], "judge": "heuristic"}, timeout=0
        )
        finished = asyncio.run(_wait(run.id))
        assert finished.state.is_completed(), finished.state.message
        # the long-running deployment, here for a minute: a trace dropped meanwhile is ingested, verified and scored
        (new,) = clone_examples(Path(inbox), 1)
        run = run_deployment("serve-inbox/serve-inbox", parameters={"stop_after_s": 60, "poll_s": 0.5}, timeout=0)
        served = asyncio.run(_wait(run.id))
        assert served.state.is_completed(), served.state.message
    finally:
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
    scores = Lake(lake).scores().collect()
    assert set(scores["status"]) == {"scored"} and new in set(scores["trace_id"]), out[-3000:]
    assert scores.filter(pl.col("trace_id") != new).height >= 3  # reprocess scored the three examples
    assert new in set(Lake(lake).qa_runs().collect()["trace_id"]) and not list(Path(inbox).iterdir())


async def _schedules(deployments) -> dict[str, str]:
    from prefect.client.orchestration import get_client

    out = {}
    async with get_client() as client:
        for name, d in deployments.items():
            for s in await client.read_deployment_schedules(d.id):
                out[name] = "cron" if hasattr(s.schedule, "cron") else "interval"
    return out
