"""maintain_lake and forget_participant: retention, compaction, vacuum, and erasure down to the disk."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest

from client.storage import fs_for, join
from flows.ingest import ingest_inbox
from flows.judge import judge_traces
from flows.maintain import forget_participant, maintain_lake
from lake import Lake
from schemas.errors import ConfigError
from schemas.settings import get_ingest_settings
from tasks.ingest.privacy import pseudonym
from tasks.upkeep.maintain import retention
from tests.support.tracegen import chunk_keys, lake_text, objects, put, write_trace

pytestmark = pytest.mark.usefixtures("prefect_api")


def _alice_and_bob(inbox: str) -> None:
    write_trace(
        inbox,
        "alice-1",
        participant="alice@example.org",
        texts={"note": "ALICE-NOTE-7731 the divisor", "stdout": "ALICE-OUT-7731\n" * 5000},
    )
    write_trace(inbox, "alice-2", participant="alice@example.org", texts={"message": "ALICE-COMMIT-7731"})
    write_trace(inbox, "alice-bad", participant="alice@example.org", texts={"note": "ALICE-QUARANTINED-7731"})
    key = "alice-bad/" + chunk_keys(inbox, "alice-bad")[0]
    put(inbox, key, objects(inbox)[key].replace(b"ALICE-QUARANTINED", b"ALICE-QUARANTINEX"))  # broken chain: quarantined
    write_trace(inbox, "bob-1", participant="bob@example.org", texts={"note": "BOB-NOTE-5512"})
    # A manifest that fails its schema still names its participant: its quarantine copy is theirs.
    write_trace(inbox, "alice-schema", participant="alice@example.org", texts={"note": "ALICE-SCHEMA-7731"})
    m = json.loads(objects(inbox)["alice-schema/manifest.json"])
    m["started_at"] = "not a time"
    put(inbox, "alice-schema/manifest.json", json.dumps(m).encode())


ALICE = pseudonym("alice@example.org", get_ingest_settings().pseudonym_key.get_secret_value())


@pytest.mark.parametrize("unnamed_rows", [False, True], ids=["named", "unnamed-quarantine-rows"])
def test_forget_participant_leaves_nothing_on_disk(storage_url, unnamed_rows, monkeypatch):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    _alice_and_bob(inbox)
    if unnamed_rows:  # as ingest wrote them before it read the pseudonym from a failed manifest
        import tasks.ingest.batch

        named = tasks.ingest.batch._participant
        monkeypatch.setattr(
            tasks.ingest.batch, "_participant", lambda blobs, t, key: None if t == "alice-schema" else named(blobs, t, key)
        )
    ingest_inbox(inbox=inbox, lake=lake, workers=1)  # in this process: where the patch above applies
    judge_traces(lake=lake)
    lk = Lake(lake)
    assert sorted(lk.traces().collect()["trace_id"]) == ["alice-1", "alice-2", "bob-1"]
    q = lk.quarantine().collect().sort("trace_id")
    assert q["trace_id"].to_list() == ["alice-bad", "alice-schema"]
    assert q["participant"].to_list() == [ALICE, None if unnamed_rows else ALICE]
    assert "ALICE-NOTE-7731" in lake_text(lake) and "ALICE-OUT-7731" in lake_text(lake) and "ALICE-SCHEMA" in lake_text(lake)

    result = forget_participant(participant=ALICE, lake=lake)
    assert result.traces == ["alice-1", "alice-2"] and result.quarantined == 2
    assert result.files_vacuumed > 0 and result.artifacts_removed >= 1  # alice's large output artifact

    for name in ("traces", "events", "metrics", "scores", "quarantine"):
        assert set(lk.table(name).collect()["trace_id"]) <= {"bob-1"}, name
    assert lk.events().collect().height == 7 and lk.scores().collect().height == 1
    text = lake_text(lake)
    for needle in (
        "ALICE-NOTE-7731",
        "ALICE-OUT-7731",
        "ALICE-COMMIT-7731",
        "ALICE-QUARANTIN",
        "ALICE-SCHEMA",
        "alice@example.org",
        ALICE,
        "alice-1",
        "alice-bad",
    ):
        assert needle not in text, needle
    assert "BOB-NOTE-5512" in text  # the other participant is untouched
    assert not [k for k in objects(lake) if "alice" in k]
    assert Lake(lake).events().filter(pl.col("trace_id") == "bob-1").collect().height == 7  # still readable after the erasure


def test_maintain_compacts_vacuums_and_removes_unreferenced_artifacts(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    for i in range(3):
        write_trace(inbox, f"t-{i}")
    ingest_inbox(inbox=inbox, lake=lake, batch_max_traces=1)  # three appends: three small files per table
    lk = Lake(lake)
    assert len(lk.tables.open("events").file_uris()) == 3
    fs, root = fs_for(lake)
    stray = join(root, "artifacts", "f" * 64)
    fs.pipe_file(stray, b"nobody points here")
    os.utime(stray, (time.time() - 3 * 86400,) * 2)
    fresh = join(root, "artifacts", "e" * 64)
    fs.pipe_file(fresh, b"a writer may be about to reference this")
    # An ingest that has written its data file and is about to commit it: vacuuming at 0 hours
    # deleted such a file once, and the ingest's commit then pointed at nothing.
    some = next(p for p in (tmp_path / "lake" / "events").rglob("*.parquet") if "_delta_log" not in p.parts)
    in_flight = some.with_name("part-00000-in-flight-c000.zstd.parquet")
    in_flight.write_bytes(some.read_bytes())

    result = maintain_lake(lake=lake, vacuum_retention_hours=0)
    assert result.expired_traces == [] and result.artifacts_removed == 1
    assert not fs.exists(stray) and fs.exists(fresh)
    assert len(lk.tables.open("events").file_uris()) == 1
    assert result.tables["events"]["files_removed"] == 3 and result.tables["events"]["vacuumed"] >= 3
    events_dir = tmp_path / "lake" / "events"
    parquet = [p for p in events_dir.rglob("*.parquet") if "_delta_log" not in p.parts]
    assert in_flight.exists()  # not in the log yet, and young: kept
    assert len(parquet) == 2  # the small files are gone from disk, not only from the log
    assert lk.events().select(pl.len()).collect().item() == 21
    assert lk.traces().select(pl.col("snapshot_ref").str.slice(7)).collect().item(0, 0) in {
        p.name for p in (tmp_path / "lake" / "artifacts").iterdir()
    }


def test_retention_removes_old_traces_everywhere(tmp_path):
    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "t-old")
    ingest_inbox(inbox=inbox, lake=lake)
    judge_traces(lake=lake)
    fs, root = fs_for(lake)
    lk = Lake(lake)
    assert retention(lk, fs, root, retention_days=90, run_id="test").expired_traces == []  # too young
    later = datetime.now(UTC).date() + timedelta(days=91)
    r = retention(lk, fs, root, retention_days=90, today=later, run_id="test")
    assert r.expired_traces == ["t-old"]
    for name in ("traces", "events", "metrics", "scores"):
        assert lk.table(name).collect().height == 0, name
    assert not [k for k in objects(lake) if k.startswith("raw/")]


def test_operations_commands(tmp_path, cli_env):
    import subprocess
    import sys

    from tests.conftest import REPO

    inbox, lake = str(tmp_path / "inbox"), str(tmp_path / "lake")
    write_trace(inbox, "t-cli", participant="dave@example.org")

    def prt(*args):
        out = subprocess.run(
            [sys.executable, "-m", "client.cli", *args, "--lake", lake],
            cwd=REPO,
            env={**cli_env, "PRT_INBOX": inbox},
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    prt("ingest")
    assert "1 scored" in prt("reprocess", "--stages", "validate,judge") and "nothing new" in prt("judge")
    assert "1 still valid" in prt("reprocess", "--stages", "validate")
    assert "0 traces expired" in prt("maintain")
    dave = subprocess.run(
        [sys.executable, "-m", "client.cli", "pseudonym", "dave@example.org"],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert dave == pseudonym("dave@example.org", get_ingest_settings().pseudonym_key.get_secret_value())
    assert "1 traces and 0 quarantine records erased" in prt("forget", "--participant", "dave@example.org")
    # Prefect keeps every run's parameters: the erased id is not among them, only its pseudonym.
    runs = httpx.post(
        f"{cli_env['PREFECT_API_URL']}/flow_runs/filter", json={"flows": {"name": {"any_": ["forget-participant"]}}}
    ).json()
    assert dave in [r["parameters"]["participant"] for r in runs] and "dave@example.org" not in json.dumps(runs)
    again = subprocess.run(
        [sys.executable, "-m", "client.cli", "forget", "--participant", "dave@example.org", "--lake", lake],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "nothing matched" in again.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "client.cli", "reprocess", "--stages", "validate,lint", "--lake", lake],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown stage(s) lint" in bad.stderr


def test_forget_takes_a_pseudonym_never_an_id(tmp_path):
    with pytest.raises(ConfigError, match="is not a pseudonym"):
        forget_participant(participant="alice@example.org", lake=str(tmp_path / "lake"))


def test_forget_removes_the_participants_snapshots_from_the_qa_cache(tmp_path, monkeypatch):
    from schemas.settings import get_sandbox_settings

    inbox, lake, workdir = str(tmp_path / "inbox"), str(tmp_path / "lake"), tmp_path / "qa"
    monkeypatch.setenv("PRT_SANDBOX_WORKDIR", str(workdir))
    get_sandbox_settings.cache_clear()
    write_trace(inbox, "erin-1", participant="erin@example.org")
    ingest_inbox(inbox=inbox, lake=lake)
    digest = Lake(lake).traces().collect()["snapshot_ref"].item().removeprefix("sha256:")
    (workdir / "prt-snapshots" / digest).mkdir(parents=True)  # as QA left it
    (workdir / "prt-snapshots" / ("0" * 64)).mkdir()  # another trace's
    try:
        result = forget_participant(
            participant=pseudonym("erin@example.org", get_ingest_settings().pseudonym_key.get_secret_value()), lake=lake
        )
    finally:
        get_sandbox_settings.cache_clear()
    assert result.snapshots == {digest} and result.qa_cache.startswith("1 snapshots")
    assert sorted(p.name for p in (workdir / "prt-snapshots").iterdir()) == ["0" * 64]
