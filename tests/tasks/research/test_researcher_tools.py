"""prt export, prt show, prt report and the notebook, on a lake holding the verified and scored examples."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def prt(args: list[str], env: dict, lake: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args, "--lake", lake], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_is_deterministic_and_loads_with_datasets(examples_lake, cli_env, tmp_path, fmt):
    first, second = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    for out in (first, second):
        r = prt(["export", "--format", fmt, "--out", str(out)], cli_env, examples_lake)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "wrote 3 records" in r.stdout
    assert first.read_bytes() == second.read_bytes()

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset(
        "json" if fmt == "jsonl" else "parquet", data_files=str(first), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert ds.num_rows == 3 and ds["trace_id"] == sorted(ds["trace_id"])
    simple = ds[ds["trace_id"].index("example-simple-fix")]
    assert simple["verdict"] == "verified"
    assert simple["fail_to_pass"] == ["tests/test_stats.py::test_mean", "tests/test_stats.py::test_mean_single_value"]
    assert [s["type"] for s in simple["steps"]][:3] == ["note", "command", "test_run"]
    assert (
        simple["final_patch"].startswith("--- a/stats.py\n+++ b/stats.py\n")
        and "+    return sum(values) / len(values)\n" in simple["final_patch"]
    )
    assert simple["scores"]["judge_id"].startswith("heuristic-") and 0 <= simple["scores"]["overall"] <= 5
    prov = simple["provenance"]
    assert prov["ingest_run_id"] and prov["qa_id"] and prov["qa_run_id"] and prov["score_run_id"] and simple["chain_head"]


def test_export_filters(examples_lake, cli_env, tmp_path):
    out = tmp_path / "f.jsonl"

    def ids(*args):
        r = prt(["export", "--out", str(out), *args], cli_env, examples_lake)
        assert r.returncode == 0, r.stderr[-2000:]
        return [json.loads(line)["trace_id"] for line in out.read_text().splitlines()]

    assert ids("--verdict", "verified") == ["example-multi-file-fix", "example-simple-fix"]
    assert ids("--min-score", "4.0") == ["example-failed-attempt", "example-multi-file-fix"]
    assert ids("--verdict", "verified", "--min-score", "4.0", "--judge", "heuristic") == ["example-multi-file-fix"]
    assert ids("--verdict", "regression") == []
    # No example session changes test configuration: "no" keeps all three, "yes" none.
    assert ids("--test-config-changed", "no") == ["example-failed-attempt", "example-multi-file-fix", "example-simple-fix"]
    assert ids("--test-config-changed", "yes") == []
    assert ids("--since", "2025-10-10", "--until", "2025-10-31") == ["example-failed-attempt", "example-multi-file-fix"]
    assert ids("--repo", "example.org/prt-examples/inventory", "--task", "BUG-202") == ["example-multi-file-fix"]
    for args, says in (
        (["--verdict", "verifed"], "verifed is not a verdict; verdicts: error, not_fixed, partial,"),
        (["--judge", "openai"], "no judge 'openai' in"),
        (["--repo", "github.com/x/y"], "no trace of github.com/x/y"),
    ):
        r = prt(["export", "--out", str(out), *args], cli_env, examples_lake)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr[-500:])
    empty = prt(
        ["export", "--out", str(out), "--verdict", "verified", "--min-score", "4.9", "--until", "2025-10-10"],
        cli_env,
        examples_lake,
    )
    assert empty.returncode == 0 and "wrote 0 records" in empty.stdout
    assert "traces in the lake: 3" in empty.stdout and "session date … to 2025-10-10: removed 1, 2 left" in empty.stdout
    assert "verdict verified: removed 0, 2 left" in empty.stdout and "score >= 4.9: removed 2, 0 left" in empty.stdout
    ids("--test-config-changed", "no")
    first = json.loads(out.read_text().splitlines()[0])
    assert first["test_config_changed"] is False and len(first["repo"]["snapshot_tree"]) == 40


def test_show_prints_a_timeline(examples_lake, cli_env):
    r = prt(["show", "example-multi-file-fix"], cli_env, examples_lake)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for expected in (
        "Discounted cart totals are too low",
        "verified",
        "FAIL_TO_PASS  tests/test_regression.py::test_mixed_discounts_are_applied_once",
        "HYPOTHESIS",
        "EDIT        inventory/cart.py",
        "-            total += apply_discount(price, line.discount_percent)",
        "✗ 7 passed, 1 failed",
        "COMMIT",
        "heuristic-",
    ):
        assert expected in out, expected
    missing = prt(["show", "no-such-trace"], cli_env, examples_lake)
    assert missing.returncode == 2 and "no trace 'no-such-trace'" in missing.stderr


def test_report_writes_html_with_plots_and_an_artifact(examples_lake, cli_env, tmp_path, prefect_api):
    out = tmp_path / "report"
    r = prt(["report", "--out", str(out)], cli_env, examples_lake)
    assert r.returncode == 0, r.stderr[-2000:]
    page = (out / "report.html").read_text()
    for png in ("verdicts.png", "scores.png", "events.png", "sessions.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{png}"' in page
    assert (
        "<b>3</b>traces" in page and "example-multi-file-fix" in page and "http" not in page.split("<body>")[1].split("</p>")[1]
    )

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest():
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["report-summary"])), limit=20
            )
            return sorted(found, key=lambda a: a.created)[-1]

    artifact = asyncio.run(latest())
    assert artifact.type == "markdown" and "traces: **3**" in artifact.data and "verified 2" in artifact.data


def test_notebook_runs(examples_lake, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "examples" / "notebooks" / "explore.ipynb", as_version=4)
    os.environ["PRT_LAKE"] = examples_lake
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("PRT_LAKE", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "'traces': 3" in text and "example-multi-file-fix" in text and "edits" in text


def test_export_a_dataset_folder_with_splits_and_a_card(examples_lake, cli_env, tmp_path):
    out = tmp_path / "set"
    args = [
        "export",
        "--out",
        str(out),
        "--split",
        "train=0.5,validation=0.25,test=0.25",
        "--split-by",
        "repo",
        "--license",
        "cc-by-4.0",
    ]
    r = prt(args, cli_env, examples_lake)
    assert r.returncode == 0, r.stderr[-2000:]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "config_name: default" in card and "num_examples" in card
    assert "table versions: traces " in card and "## Splits" in card

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert sum(ds.num_rows.values()) == 3 and set(ds) <= {"train", "validation", "test"}
    where = {rec["repo"]["origin"]: name for name in ds for rec in ds[name]}
    assert len(where) == 3  # each repo in exactly one split
    first = next(rec for name in ds for rec in ds[name])
    assert first["participant"].startswith("p_") and first["session"]["started_at"].startswith("2025-10-")
    assert first["dedup_group"] == first["trace_id"]

    # A record's split depends on its key alone: exporting a subset puts every record where it was.
    again = tmp_path / "subset"
    r = prt([*args[:2], str(again), *args[3:], "--verdict", "verified"], cli_env, examples_lake)
    assert r.returncode == 0, r.stderr[-2000:]
    subset = datasets.load_dataset(str(again), cache_dir=str(tmp_path / "hf2"))
    assert {rec["repo"]["origin"]: name for name in subset for rec in subset[name]}.items() <= where.items()
    bad = prt(["export", "--out", str(tmp_path / "x"), "--split", "train=0.9,test=0.2"], cli_env, examples_lake)
    assert bad.returncode == 2 and "add up to 1.1, not 1" in bad.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_streams_shards_to_s3(examples_lake, s3_endpoint, tmp_path, fmt):
    import fsspec
    import pyarrow.parquet as pq

    from lake import Lake
    from tasks.research.export import export
    from tests.conftest import _new_bucket

    out = f"s3://{_new_bucket()}/sets/v1"
    report = export(Lake(examples_lake), out, fmt, max_shard_bytes=1)  # every record its own shard
    assert report.counts == {"train": 3} and len(report.files["train"]) == 3
    s3 = fsspec.filesystem("s3", endpoint_url=s3_endpoint)
    assert sorted(s3.ls(out.removeprefix("s3://") + "/data")) == sorted(p.removeprefix("s3://") for p in report.files["train"])
    ids = []
    for path in report.files["train"]:
        with s3.open(path, "rb") as f:
            ids += (
                [json.loads(line)["trace_id"] for line in f]
                if fmt == "jsonl"
                else pq.read_table(f).column("trace_id").to_pylist()
            )
    assert ids == ["example-failed-attempt", "example-multi-file-fix", "example-simple-fix"]
    assert s3.cat_file(out.removeprefix("s3://") + "/README.md").startswith(b"---\nlicense: other\n")
