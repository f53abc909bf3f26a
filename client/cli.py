"""The `prt` command. Subcommands import what they need when they run, so `prt note` stays instant."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from schemas.errors import PrtError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="prt",
    help="PR Telemetry: turn bug-fixing sessions into verified, scored training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) is not a terminal: give tables room instead of the default 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line: greppable in logs

InboxOpt = Annotated[
    str | None, typer.Option("--inbox", help="Inbox URL (default: $PRT_INBOX or ./data/inbox).", show_default=False)
]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        help="The interpreter the tests run with (default: the activated virtualenv's, else python3).", show_default=False
    ),
]
InstallOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--install",
        help="A build step QA runs before every test run, e.g. 'python setup.py build_ext --inplace' (repeat for several).",
        show_default=False,
    ),
]
ImageOpt = Annotated[str | None, typer.Option(help="A sandbox image to verify in (docker back-end).", show_default=False)]
LakeOpt = Annotated[str | None, typer.Option("--lake", help="Lake URL (default: $PRT_LAKE or ./data/lake).", show_default=False)]


_track: bool | None = None
"""`prt --track/--no-track`: overrides PRT_TRACK for this command."""


def _tracked() -> bool:
    """Whether this command's jobs run as Prefect flow runs (client/tracking.py)."""
    from client.tracking import tracked
    from schemas.settings import get_settings

    return _track if _track is not None else tracked(get_settings().track)


def _job(module: str, name: str) -> Callable:
    """The job `jobs.<module>.<name>`; its Prefect flow (`flows.<module>.<name>`) when runs are tracked."""
    import importlib

    return getattr(importlib.import_module(f"{'flows' if _tracked() else 'jobs'}.{module}"), name)


def _runs_jobs(command: Callable[P, R]) -> Callable[P, R]:
    """For a command that runs jobs: as Prefect flow runs without heartbeats (flows.local_runs)
    when tracked, else as plain Python whose progress goes to stderr like Prefect's would."""

    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _tracked():
            _log_to_stderr()
            return command(*args, **kwargs)
        from flows import local_runs

        with local_runs():
            return command(*args, **kwargs)

    return run


def _log_to_stderr() -> None:
    """The jobs' progress on stderr (once per process, however many commands it runs)."""
    import logging

    logger = logging.getLogger("prt")
    logger.setLevel(os.environ.get("PRT_LOG_LEVEL", "INFO").upper())
    if any(getattr(h, "prt_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
    handler.prt_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


@app.callback()
def _root(
    track: Annotated[
        bool | None,
        typer.Option(
            "--track/--no-track",
            help="Run jobs as Prefect flow runs (shown in the UI; without a configured server Prefect starts a temporary one), "
            "or as plain Python. Default: $PRT_TRACK (auto: tracked when a Prefect API is configured).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """PR Telemetry: turn bug-fixing sessions into verified, scored training data."""
    global _track
    _track = track


def _inbox(value: str | None) -> str:
    from schemas.settings import get_settings

    return value or get_settings().inbox


def _lake(value: str | None) -> str:
    from schemas.settings import get_settings

    return value or get_settings().lake


@app.command()
def upload(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="A trace folder, or a folder of trace folders.", exists=True, file_okay=False)
    ],
    inbox: InboxOpt = None,
    grant: Annotated[
        str | None,
        typer.Option("--grant", help="Upload through a grant file from `prt grant` (no credentials needed).", show_default=False),
    ] = None,
) -> None:
    """Upload trace folders laid out per inbox protocol v1 (complete.json goes last)."""
    from client.upload import find_trace_dirs, upload_trace_dir

    target, put = _inbox(inbox), None
    if grant:  # the grant says where; no credentials, no inbox URL
        from client.grant import GrantUploader, load_grant

        target, put = None, GrantUploader(load_grant(grant)).put
    for folder in find_trace_dirs(directory):
        r = upload_trace_dir(folder, target, put=put)
        state = "complete" if r.complete else "no complete.json yet"
        console.print(f"{r.trace_id}: {r.created} objects uploaded, {r.unchanged} already there ({state})")


@app.command()
def grant(
    trace_id: Annotated[str, typer.Argument(metavar="TRACE_ID")],
    inbox: InboxOpt = None,
    expires_s: Annotated[int, typer.Option("--expires-s", help="Seconds the grant stays valid.")] = 3600,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Largest object the grant accepts.")] = 512 * 2**20,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the grant here instead of printing it.", show_default=False)
    ] = None,
) -> None:
    """Issue a short-lived upload grant for one trace (a presigned S3 POST policy: that trace's prefix, a size cap)."""
    import json

    from client.grant import issue_grant

    text = json.dumps(issue_grant(_inbox(inbox), trace_id, expires_s=expires_s, max_bytes=max_bytes), indent=2)
    if out:
        out.write_text(text + "\n")
        os.chmod(out, 0o600)
        err_console.print(f"grant for {trace_id} written to {out} (valid {expires_s} s)")
    else:
        print(text)


def _print_ingest(summary) -> None:
    from rich.table import Table

    console.print(
        f"[bold]ingest[/bold]: {len(summary.ingested)} ingested ({summary.events} events), "
        f"{len(summary.quarantined)} quarantined, {len(summary.pending)} pending, "
        f"{len(summary.cleaned)} already in the lake, {len(summary.in_progress)} in progress elsewhere"
    )
    if summary.quarantined:
        table = Table("trace", "reason", "message", show_lines=False, box=None)
        for tid, reason, message in summary.quarantined:
            table.add_row(tid, reason, message)
        console.print(table)
    if summary.pending:
        console.print("pending: " + ", ".join(summary.pending))
    if summary.seconds:
        split = ", ".join(f"{stage} {sec:.1f} s" for stage, sec in summary.seconds.items())
        console.print(f"[dim]time per stage (summed over batches): {split}[/dim]")


@app.command()
@_runs_jobs
def ingest(
    inbox: InboxOpt = None,
    lake: LakeOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes ingesting batches at once (default: $PRT_WORKERS, or auto: one per core).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Assemble and validate complete traces from the inbox into the lake's Delta tables."""
    ingest_inbox = _job("ingest", "ingest_inbox")
    _print_ingest(ingest_inbox(inbox=_inbox(inbox), lake=_lake(lake), workers=workers))


def _print_qa(summary) -> None:
    from rich.table import Table

    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(summary.verdicts().items())) or "nothing new"
    console.print(f"[bold]qa[/bold] ({summary.backend}): {verdicts}; {len(summary.already)} already verified")
    if summary.rows:
        table = Table("trace", "verdict", "FAIL_TO_PASS", "reason", box=None)
        for r in sorted(summary.rows, key=lambda r: r["trace_id"]):
            table.add_row(r["trace_id"], r["verdict"], str(len(r["fail_to_pass"])), r["verdict_reason"])
        console.print(table)
    for trace_id, why in getattr(summary, "failed", []):
        err_console.print(f"prt: QA could not run {trace_id} ({escape(why)}); it is verified again next time")


TraceIdsOpt = Annotated[
    list[str] | None, typer.Option("--trace-id", help="Only these traces (repeat the option).", show_default=False)
]
SandboxOpt = Annotated[
    str | None, typer.Option("--sandbox", help="auto | docker | namespace (default: $PRT_SANDBOX or auto).", show_default=False)
]


@app.command()
@_runs_jobs
def qa(
    lake: LakeOpt = None,
    trace_id: TraceIdsOpt = None,
    sandbox: SandboxOpt = None,
    parallel: Annotated[
        int | None, typer.Option(help="Sandboxes at once (default: $PRT_SANDBOX_PARALLEL or 2).", show_default=False)
    ] = None,
    reruns: Annotated[
        int | None, typer.Option(help="Extra runs of the after state to flag flaky tests.", show_default=False)
    ] = None,
) -> None:
    """Verify traces in a sandbox: tests before and after the recorded edits, FAIL_TO_PASS, verdict."""
    verify_traces = _job("qa", "verify_traces")
    _print_qa(verify_traces(lake=_lake(lake), trace_ids=trace_id or None, sandbox=sandbox, parallel=parallel, reruns=reruns))


def _day(value: str | None) -> date | None:
    """A YYYY-MM-DD option as a date (typer has datetimes, not dates)."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2025-10-09") from None


SinceOpt = Annotated[
    date | None, typer.Option(help="Ingest date from (YYYY-MM-DD).", parser=_day, metavar="DATE", show_default=False)
]
UntilOpt = Annotated[
    date | None,
    typer.Option(help="Ingest date to (YYYY-MM-DD), inclusive.", parser=_day, metavar="DATE", show_default=False),
]
JudgeOpt = Annotated[
    str | None, typer.Option("--judge", help="heuristic | openai (default: $PRT_JUDGE or heuristic).", show_default=False)
]


def _print_judge(summary) -> None:
    from rich.table import Table

    states = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status().items())) or "nothing new"
    console.print(f"[bold]judge[/bold] {summary.judge_id}: {states}")
    if summary.rows:
        columns = {  # header -> score column
            "overall": "overall",
            "understand": "problem_understanding",
            "causal": "causal_linking",
            "experiment": "experiment_design",
            "efficiency": "efficiency",
            "repro": "reproducibility",
            "safety": "safety_hygiene",
        }
        table = Table(box=None)
        table.add_column("trace", no_wrap=True)
        table.add_column("status")
        for header in columns:
            table.add_column(header, justify="right")
        for r in summary.table():
            scores = ("" if r[c] is None else f"{r[c]:.2f}" for c in columns.values())
            table.add_row(r["trace_id"], r["status"], *scores)
        console.print(table)


@app.command()
@_runs_jobs
def judge(lake: LakeOpt = None, judge: JudgeOpt = None, trace_id: TraceIdsOpt = None) -> None:
    """Score traces on the six-part rubric (heuristic offline, or any OpenAI-compatible model)."""
    judge_traces = _job("judge", "judge_traces")
    _print_judge(judge_traces(lake=_lake(lake), judge=judge, trace_ids=trace_id or None))


@app.command()
@_runs_jobs
def process(inbox: InboxOpt = None, lake: LakeOpt = None, sandbox: SandboxOpt = None, judge: JudgeOpt = None) -> None:
    """Ingest the inbox, verify the new traces, score them (the scheduled job)."""
    process_inbox = _job("process", "process_inbox")
    _print_process(process_inbox(inbox=_inbox(inbox), lake=_lake(lake), sandbox=sandbox, judge=judge))


def _print_process(result) -> None:
    _print_ingest(result.ingest)
    _print_qa(result.qa)
    _print_judge(result.judge)


@app.command()
@_runs_jobs
def serve(
    inbox: InboxOpt = None,
    lake: LakeOpt = None,
    sandbox: SandboxOpt = None,
    judge: JudgeOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Ingest worker processes (default: $PRT_WORKERS, or auto: one per core).", show_default=False
        ),
    ] = None,
    poll_s: Annotated[
        float | None,
        typer.Option(
            "--poll-s", min=0.1, help="Seconds between looks at the inbox (default: $PRT_SERVE_POLL_S or 2).", show_default=False
        ),
    ] = None,
    stop_after_s: Annotated[
        float | None,
        typer.Option(
            "--stop-after-s", min=0, help="Stop after this many seconds (default: run until stopped).", show_default=False
        ),
    ] = None,
) -> None:
    """Watch the inbox and ingest, verify and score each trace as it arrives, newest first, until
    SIGTERM or Ctrl-C (the batches in flight finish first; a second signal stops at once)."""
    r = _job("serve", "serve_inbox")(
        inbox=_inbox(inbox),
        lake=_lake(lake),
        sandbox=sandbox,
        judge=judge,
        workers=workers,
        poll_s=poll_s,
        stop_after_s=stop_after_s,
    )
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(r.verdicts.items())) or "none"
    console.print(
        f"[bold]ingest[/bold]: {r.ingested} ingested ({r.events} events), {r.quarantined} quarantined; "
        f"[bold]qa[/bold]: {verdicts}; [bold]judge[/bold]: {r.scored} scored"
    )
    for failure in r.failed[-20:]:
        err_console.print(f"prt: {escape(failure)}")


@app.command()
@_runs_jobs
def reprocess(
    since: SinceOpt = None,
    until: UntilOpt = None,
    trace_id: TraceIdsOpt = None,
    stages: Annotated[str, typer.Option(help="Comma-separated: validate, regrade, qa, judge.")] = "validate,regrade,qa,judge",
    judge: JudgeOpt = None,
    lake: LakeOpt = None,
) -> None:
    """Run stages again over traces in the lake (no filter = all); re-running changes nothing."""
    from typing import get_args

    from jobs.reprocess import Stage

    known = get_args(Stage)
    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = set(chosen) - set(known)
    if unknown:
        raise typer.BadParameter(
            f"unknown stage(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}", param_hint="--stages"
        )
    result = _job("reprocess", "reprocess")(
        since=since,
        until=until,
        trace_ids=trace_id or None,
        stages=chosen,
        judge=judge,
        lake=_lake(lake),
    )
    console.print(result.markdown().replace("# ", "").replace("**", "").strip())
    if result.qa:
        _print_qa(result.qa)
    if result.judge:
        _print_judge(result.judge)


@app.command()
@_runs_jobs
def maintain(
    lake: LakeOpt = None,
    retention_days: Annotated[int | None, typer.Option(help="Default: $PRT_RETENTION_DAYS or 90.", show_default=False)] = None,
) -> None:
    """Retention, unreferenced artifacts, compaction, checkpoints and vacuum."""
    r = _job("maintain", "maintain_lake")(lake=_lake(lake), retention_days=retention_days)
    console.print(
        f"[bold]maintain[/bold]: {len(r.expired_traces)} traces expired, {r.expired_quarantine} quarantine records, {r.artifacts_removed} artifacts removed"
    )
    for name, t in r.tables.items():
        console.print(
            f"  {name}: {t['files_removed']} files compacted into {t['files_added']}, {t['vacuumed']} vacuumed, version {t['version']}"
        )


def _pseudonym_of(participant_id: str) -> str:
    from schemas.settings import get_ingest_settings
    from tasks.ingest.privacy import pseudonym

    return pseudonym(participant_id, get_ingest_settings().pseudonym_key.get_secret_value())


@app.command("pseudonym")
def pseudonym_cmd(
    participant: Annotated[str, typer.Argument(metavar="PARTICIPANT_ID", help="The id as clients send it.")],
) -> None:
    """Print a participant's pseudonym (with this environment's PRT_PSEUDONYM_KEY): what the lake
    stores, and what the forget-participant flow takes, e.g. from the Prefect UI."""
    typer.echo(_pseudonym_of(participant))


@app.command()
@_runs_jobs
def forget(
    participant: Annotated[
        str | None,
        typer.Option(
            "--participant",
            help="The participant id as clients send it (only its pseudonym leaves this process).",
            show_default=False,
        ),
    ] = None,
    pseudonym: Annotated[
        str | None, typer.Option("--pseudonym", help="Their pseudonym instead (`prt pseudonym ID`).", show_default=False)
    ] = None,
    lake: LakeOpt = None,
) -> None:
    """Erase a participant: rows, raw objects, artifacts and this host's QA cache, and vacuum the old
    files. Exits 1 when nothing matched."""
    if (participant is None) == (pseudonym is None):
        raise typer.BadParameter("give --participant ID or --pseudonym P (one of them)")
    who = pseudonym if pseudonym is not None else _pseudonym_of(participant)
    r = _job("maintain", "forget_participant")(participant=who, lake=_lake(lake))
    if not r.matched:
        console.print(
            f"[bold red]forget[/bold red] {r.participant}: nothing matched (no trace, no quarantine record). "
            "Check the id is spelled as the client sent it and that PRT_PSEUDONYM_KEY is the key ingest used."
        )
        raise typer.Exit(1)
    console.print(
        f"[bold]forget[/bold] {r.participant}: {len(r.traces)} traces and {r.quarantined} quarantine records erased; "
        f"{sum(r.rows_deleted.values())} rows, {r.objects_deleted} objects, {r.artifacts_removed} artifacts deleted; "
        f"{r.files_vacuumed} old files vacuumed; QA cache: {r.qa_cache} removed"
    )


@app.command()
def show(trace_id: Annotated[str, typer.Argument(metavar="TRACE_ID")], lake: LakeOpt = None) -> None:
    """One trace as a timeline: notes, diffs, commands, test outcomes, QA verdict and scores."""
    from lake.read import Lake
    from tasks.research.show import show_trace

    show_trace(Lake(_lake(lake)), trace_id, console)


@app.command()
def export(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="A folder (any fsspec URL: s3://bucket/sets/v1) for a dataset with its card and splits; "
            "or one file ending in .jsonl or .parquet.",
        ),
    ],
    format: Annotated[str, typer.Option("--format", help="jsonl or parquet.")] = "jsonl",
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="Shares of each split, e.g. train=0.8,validation=0.1,test=0.1 (a folder only).", show_default=False
        ),
    ] = None,
    split_by: Annotated[
        str, typer.Option("--split-by", help="What never crosses splits: repo, participant or dedup_group.")
    ] = "repo",
    max_shard_bytes: Annotated[
        int, typer.Option("--max-shard-bytes", help="Largest file of a split; a record is never cut.")
    ] = 256 << 20,
    license: Annotated[str, typer.Option("--license", help="The licence field of the dataset card.")] = "other",
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Only traces with at least this overall score.", show_default=False)
    ] = None,
    verdict: Annotated[
        list[str] | None,
        typer.Option("--verdict", help="Only traces with this QA verdict (repeat for several).", show_default=False),
    ] = None,
    repo: Annotated[
        list[str] | None,
        typer.Option("--repo", help="Only sessions on this repo (its origin; repeat for several).", show_default=False),
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only sessions on this task id (repeat for several).", show_default=False)
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge", help="Judge id or kind whose scores to use (default: the latest with scores).", show_default=False
        ),
    ] = None,
    test_config: Annotated[
        str | None,
        typer.Option(
            "--test-config-changed",
            help="yes: only sessions that changed test configuration (conftest.py, pytest.ini, ...); no: only those that did not.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        date | None,
        typer.Option(
            help="Sessions started on or after this day (YYYY-MM-DD, UTC).", parser=_day, metavar="DATE", show_default=False
        ),
    ] = None,
    until: Annotated[
        date | None,
        typer.Option(help="Sessions started on or before this day.", parser=_day, metavar="DATE", show_default=False),
    ] = None,
    ingested_since: Annotated[
        date | None, typer.Option(help="Ingested on or after this day.", parser=_day, metavar="DATE", show_default=False)
    ] = None,
    ingested_until: Annotated[
        date | None, typer.Option(help="Ingested on or before this day.", parser=_day, metavar="DATE", show_default=False)
    ] = None,
    dedup: Annotated[
        bool,
        typer.Option(
            "--dedup", help="Keep only the best-scored record of each group of exact or near duplicates (see dedup_group)."
        ),
    ] = False,
    lake: LakeOpt = None,
) -> None:
    """Write a deterministic training set: one record per trace (format in tasks/research/export.py and the README)."""
    from lake.read import Lake
    from tasks.research.export import export as write_export

    if test_config not in (None, "yes", "no"):
        raise typer.BadParameter("use yes or no", param_hint="--test-config-changed")
    filters = dict(
        since=since, until=until, ingested_since=ingested_since, ingested_until=ingested_until, repo=repo or None,
        task=task or None, verdict=verdict or None, min_score=min_score,
        test_config_changed=None if test_config is None else test_config == "yes",
    )  # fmt: skip
    lk = Lake(_lake(lake))
    report = write_export(
        lk, out, format, judge=judge, dedup=dedup, split=split, split_by=split_by,
        max_shard_bytes=max_shard_bytes, license=license, **filters,
    )  # fmt: skip
    console.print(f"wrote {report.records} records to {out}")
    if len(report.counts) > 1 or not out.endswith((".jsonl", ".parquet")):
        for name, n in report.counts.items():
            console.print(f"  {name}: {n} records in {len(report.files[name])} file(s)")
    console.print(f"  {report.summary()}")
    if not report.records:  # say which filter emptied it
        (what, left), *steps = lk.funnel(judge=judge, **filters)
        console.print(f"  {what}: {left}")
        for label, now in steps:
            console.print(f"  {label}: removed {left - now}, {now} left")
            left = now


@app.command()
@_runs_jobs
def report(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and its plots.")], lake: LakeOpt = None
) -> None:
    """An HTML report of the lake with plots (also published as a Prefect markdown artifact)."""
    path = _job("report", "report_lake")(lake=_lake(lake), out=str(out))
    console.print(f"wrote {path}")


@app.command()
@_runs_jobs
def demo(inbox: InboxOpt = None, lake: LakeOpt = None) -> None:
    """Upload the three example sessions into the inbox and run the pipeline on them."""
    from client.upload import find_trace_dirs, upload_trace_dir

    examples = Path(__file__).resolve().parent.parent / "examples" / "traces"
    target_inbox, target_lake = _inbox(inbox), _lake(lake)
    for folder in find_trace_dirs(examples):
        upload_trace_dir(folder, target_inbox)
    console.print(f"uploaded the example sessions to {target_inbox}")
    _print_process(_job("process", "process_inbox")(inbox=target_inbox, lake=target_lake))
    console.print(
        f"\nThe lake is at {target_lake}. Read it with:  python -c \"from lake import Lake; print(Lake('{target_lake}').traces().collect())\""
    )


@app.command()
def bench(
    qa: Annotated[bool, typer.Option("--qa", help="Measure sandboxed verification instead of ingest.")] = False,
    judge: Annotated[bool, typer.Option("--judge", help="Measure the heuristic judge instead of ingest.")] = False,
    read: Annotated[bool, typer.Option("--read", help="Measure researcher reads from a large lake instead of ingest.")] = False,
    export: Annotated[
        bool, typer.Option("--export", help="Measure exports of a lake and of one half its size (records/s, peak memory).")
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="Profile the ingest stages in one process (default 500 sessions).")
    ] = False,
    latency: Annotated[
        bool, typer.Option("--latency", help="Time `prt ingest`, `qa` and `judge` with nothing to do, start to exit.")
    ] = False,
    freshness: Annotated[
        bool,
        typer.Option(
            "--freshness",
            help="Drop sessions into an inbox with a backlog (default 2000 x 500 events) while `prt serve` runs: seconds to rows and to a verdict.",
        ),
    ] = False,
    drops: Annotated[int, typer.Option(min=1, help="Sessions dropped, one every --every-s (--freshness).")] = 20,
    every_s: Annotated[float, typer.Option("--every-s", min=0.1, help="Seconds between drops (--freshness).")] = 2.0,
    traces: Annotated[
        int | None, typer.Option(min=1, help="Sessions to generate (default 5000; 12 with --qa).", show_default=False)
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(min=1, help="Events per generated session (default 200; 500 with --freshness).", show_default=False),
    ] = None,
    output_bytes: Annotated[
        int,
        typer.Option(
            min=0, help="About how much each generated command prints (ingest; default: a few hundred bytes).", show_default=False
        ),
    ] = 0,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Ingest worker processes.")] = 2,
    repeat: Annotated[
        int, typer.Option(min=1, help="Run the floor and the ingest this many times (ingest); report the median run.")
    ] = 1,
    parallel: Annotated[int, typer.Option(min=1, help="Sandboxes at once (--qa).")] = 2,
    sandbox: SandboxOpt = None,
    days: Annotated[int, typer.Option(min=1, help="Days of daily scores to write (--read).")] = 30,
    workdir: Annotated[
        Path | None, typer.Option(help="Where to generate inboxes and lakes (default: the temp dir).", show_default=False)
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the result as JSON here.", show_default=False)
    ] = None,
) -> None:
    """Measure the pipeline on generated sessions: ingest against the floor (default), --qa, --judge, --read,
    --export, --profile, or what a user waits on: --latency."""
    import json as json_mod

    import bench as b

    modes = (qa, judge, read, profile, export, latency, freshness)
    if sum(modes) > 1:
        raise typer.BadParameter(
            "choose one of --qa, --judge, --read, --export, --profile, --latency, --freshness (or none, for ingest)"
        )
    if output_bytes and any(modes):
        raise typer.BadParameter("--output-bytes shapes the ingest benchmark's sessions; the other modes have their own")
    if repeat > 1 and any(modes) and not latency:
        raise typer.BadParameter("--repeat is for the ingest and latency benchmarks")
    events = events or (500 if freshness else 200)
    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)
    if freshness:
        n = traces or 2000
        console.print(f"`prt serve` on a backlog of {n} sessions x {events} events; dropping {drops}, one every {every_s} s …")
        result = b.bench_freshness(n, events, drops=drops, every_s=every_s, workdir=workdir)
        to_rows, to_qa = result["to_rows"], result["to_qa_runs"]
        summary = (
            f"complete.json -> its rows in the lake: [bold]p50 {to_rows.get('p50_s')} s[/bold], p95 {to_rows.get('p95_s')} s; "
            f"-> a qa_runs row: [bold]p50 {to_qa.get('p50_s')} s[/bold], p95 {to_qa.get('p95_s')} s ({to_qa['traces']} of {drops}); "
            f"the backlog of {result['backlog_events']:,} events drained meanwhile in {result['backlog_drained_s']} s: "
            f"[bold]{result['backlog_events_per_s']:,} events/s[/bold] (alone: {result['alone_events_per_s']:,}; the server was ready "
            f"{result['ready_s']} s after its start); "
            f"stopped cleanly on SIGTERM: {result['stopped_on_sigterm']}"
        )
    elif latency:
        n = repeat if repeat > 1 else 5
        console.print(f"timing prt commands with nothing to do, no Prefect server configured, {n} times each …")
        result = b.bench_latency(repeat=n, workdir=workdir)
        summary = "; ".join(
            f"prt {name}: [bold]{c['median_s']} s[/bold] (slowest {c['max_s']} s)" for name, c in result["commands"].items()
        )
    elif qa:
        n = traces or 12
        console.print(f"verifying {n} sessions over the examples' repos, {parallel} sandboxes at once …")
        result = b.bench_qa(n, parallel=parallel, sandbox=sandbox, workdir=workdir)
        summary = (
            f"[bold]{result['traces_per_min']} traces/min[/bold] with {result['backend']} ({result['traces']} traces in "
            f"{result['seconds']} s, {parallel} at once); mean per trace: "
            + ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in result["mean_split_s"].items())
        )
        e = result["env"]
        summary += (
            f"\nsessions that recorded their packages ({e['traces']}, one at a time): the environment built in "
            f"[bold]{e['cold_build_s']} s[/bold] (download and sandboxed build; that trace's QA {e['cold_trace_s']} s), "
            f"then found built in {e['cached_lookup_s']} s: [bold]{e['cached_trace_s']} s[/bold] of QA per trace"
        )
    elif judge:
        n = traces or 5000
        console.print(f"scoring {n} generated sessions of {events} events with the heuristic judge …")
        result = b.bench_judge(n, events, workers=workers, workdir=workdir)
        summary = (
            f"[bold]{result['traces_per_s']} traces/s[/bold] scored ({result['traces']} traces of ~{result['events_per_trace']} events "
            f"in {result['score_s']} s); reading them {result['read_s']} s; the whole judge flow (read, score, write) "
            f"{result['flow_traces_per_s']} traces/s"
        )
    elif profile:
        n = traces or 500
        console.print(f"profiling the ingest stages over {n} sessions x {events} events in one process …")
        result = b.bench_profile(n, events, workdir=workdir)
        from rich.markup import escape

        tree = Path(result["profile"]).read_text()
        summary = (
            escape("\n".join(tree.splitlines()[:60]))  # "[4 frames hidden]" is not rich markup
            + f"\n[bold]{result['events_per_s']:,} events/s[/bold] in one process without Prefect; seconds per stage: "
            + ", ".join(f"{k} {v}" for k, v in result["stage_seconds"].items())
            + f"\nwhole profile: {result['profile']}"
        )
    elif export:
        n = traces or 5000
        console.print(f"building lakes of {n // 2 * events:,} and {n * events:,} events, then exporting each …")
        result = b.bench_export(n, events, workers=workers, workdir=workdir)
        summary = "\n".join(
            f"{r['events']:,} events: [bold]{r['records_per_s']} records/s[/bold] ({r['records']} records, {r['files']} files, "
            f"{r['seconds']:.1f} s), peak {r['peak_rss_mb']:.0f} MB resident ({r['resting_rss_mb']:.0f} MB before it started)"
            for r in result["runs"]
        )
    elif read:
        n = traces or 5000
        console.print(f"building a lake of {n * events:,} events and {days} days of scores, then reading from it …")
        result = b.bench_read(n, events, workers=workers, days=days, workdir=workdir)
        lines = []
        for when in ("before_maintain", "after_maintain"):
            r = result[when]
            t, d = r["one_trace_events"], r["one_day_scores"]
            lines.append(
                f"{when.replace('_', ' ')}: one trace's events {t['seconds'] * 1000:.0f} ms, {t['files_read']} of "
                f"{r['events_files']} files, {t['row_groups_read']} of {t['row_groups_in_files_read']} row groups in them; one day's scores {d['seconds'] * 1000:.0f} ms, "
                f"{d['files_read']} of {r['scores_files']} files"
            )
        summary = "\n".join(lines)
    else:
        n = traces or 5000
        runs = f", {repeat} times each" if repeat > 1 else ""
        console.print(f"generating {n} sessions x {events} events, then the floor and the ingest ({workers} workers){runs} …")
        result = b.bench_ingest(n, events, workers=workers, workdir=workdir, output_bytes=output_bytes, repeat=repeat)
        summary = (
            f"[bold]{result['ingest_events_per_s']:,} events/s[/bold] ({result['ingest_mb_per_s']} MB/s) end to end: "
            f"{result['events']:,} events (~{result['bytes_per_event']} bytes each) in {result['ingest_s']} s; floor {result['floor_events_per_s']:,} events/s "
            f"({result['floor_s']} s) -> [bold]{result['ratio_to_floor']}[/bold] of the floor; peak memory "
            f"{result['ingest_peak_mb']} MiB PSS, {result['ingest_peak_rss_sum_mb']} MiB summing RSS "
            f"(floor {result['floor_peak_mb']} MiB); Delta files "
            + ", ".join(f"{k} {v}" for k, v in result["delta_files"].items())
            + "\ntime per stage (summed over workers): "
            + ", ".join(f"{k} {v} s" for k, v in result["stage_seconds"].items())
            + f"; worker start (once, before timing) {result['worker_start_s']} s"
            + f"\nCPU, whole machine, during the ingest: {result['ingest_busy_cores']} of {os.cpu_count()} cores busy ("
            + ", ".join(f"{k} {v} s" for k, v in result["ingest_cpu_seconds"].items())
            + f"); during the floor {result['floor_busy_cores']}"
            + f"\n`prt ingest` as a user runs it (command start to exit, defaults: {result['command_workers']} workers, no Prefect "
            f"server): [bold]{result['command_events_per_s']:,} events/s[/bold] ({result['command_s']} s), peak {result['command_peak_mb']} MiB PSS"
        )
        if repeat > 1:
            ev = sorted(r["ingest_events_per_s"] for r in result["runs"])
            cmd = sorted(r["command_events_per_s"] for r in result["runs"])
            ratio = sorted(r["ratio_to_floor"] for r in result["runs"])
            summary += (
                f"\nthe median of {repeat} runs (peak memory: the highest); all runs: {ev[0]:,}–{ev[-1]:,} events/s, "
                f"ratio {ratio[0]}–{ratio[-1]}; `prt ingest` {cmd[0]:,}–{cmd[-1]:,} events/s"
            )
    console.print(summary + "\n" + _measured_on(result["machine"]))
    text = json_mod.dumps(result, indent=1, default=str)
    if json_out:
        json_out.write_text(text + "\n")
    else:
        console.print(text, highlight=False)


def _measured_on(m: dict) -> str:
    """One line on where a bench result comes from: numbers only compare on like machines and disks."""
    line = f"measured on {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_gib']} GiB, Python {m['python']}"
    fs = m["filesystem"]
    if fs:
        line += f"; workdir on {fs['type']} ({fs['device']} at {fs['mount']}, {fs['options']})"
        if "journal" in fs:
            line += ", with a journal" if fs["journal"] else ", without a journal"
    return line


# -- the recorder: prt record start|stop|abort|commit|watch|status, prt run, prt note ----------------

record_app = typer.Typer(
    help="Record a debugging session from the terminal (state in .git/prt/).", no_args_is_help=True, add_completion=False
)
app.add_typer(record_app, name="record")


def _recorder():
    from client.recorder import Recorder

    return Recorder(Path.cwd())


def _participant(value: str | None) -> str:
    import subprocess

    from schemas.settings import get_settings

    found = value or get_settings().participant
    if not found:
        found = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip()
    if not found:
        raise typer.BadParameter(
            "set PRT_PARTICIPANT (or git config user.email), or pass --participant", param_hint="--participant"
        )
    return found


@record_app.command("start")
def record_start(
    task_id: Annotated[str, typer.Option("--task-id", help="The task or bug id, e.g. BUG-456.")],
    title: Annotated[str, typer.Option(help="One line saying what is wrong.")],
    description: Annotated[str, typer.Option(help="More about the task.")] = "",
    inbox: InboxOpt = None,
    participant: Annotated[
        str | None, typer.Option(help="Your participant id (default: $PRT_PARTICIPANT, else git user.email).", show_default=False)
    ] = None,
    consent: Annotated[str, typer.Option(help="yes | no | ask: agree to the collection of this session.")] = "ask",
    test_command: Annotated[
        str, typer.Option(help="How verification runs the repo's tests: one runner invocation, no shell.")
    ] = "python -m pytest -q",
    timeout_s: Annotated[float, typer.Option(help="Time limit for one test run in verification.")] = 300.0,
    python: PythonOpt = None,
    install: InstallOpt = None,
    image: ImageOpt = None,
) -> None:
    """Begin recording in this git repo: snapshot HEAD and capture the environment the tests run in."""
    rec = _recorder()
    who = _participant(participant)
    if consent == "ask":
        if not sys.stdin.isatty():
            raise typer.BadParameter("no terminal to ask on; pass --consent yes to agree", param_hint="--consent")
        agreed = typer.confirm(
            f"Record this session (commands, outputs, edits and notes in {rec.repo.name}) for PR Telemetry as {who}?",
            default=False,
        )
    elif consent in ("yes", "no"):
        agreed = consent == "yes"
    else:
        raise typer.BadParameter("yes, no or ask", param_hint="--consent")
    if not agreed:
        err_console.print("not recording: consent was not given")
        raise typer.Exit(1)
    target = _inbox(inbox)
    tid, warnings = rec.start(task_id=task_id, title=title, description=description, inbox=target, participant=who,
                              test_command=test_command, timeout_s=timeout_s, python=python, install=install, image=image)  # fmt: skip
    for message in warnings:
        err_console.print(f"prt: {escape(message)}")
    env = rec.status()["environment"]
    console.print(f"recording [bold]{tid}[/bold] into {target}; `prt run -- CMD`, `prt note KIND TEXT`, `prt record stop`")
    console.print(
        f"environment: Python {env['python_version']}, {len(env.get('packages') or [])} packages"
        + (f", build steps: {'; '.join(env['install'])}" if env.get("install") else "")
        + " (change with `prt record set`)",
        highlight=False,
        markup=False,
    )
    dirty = rec.dirty_files()
    if dirty:
        err_console.print(
            f"prt: {len(dirty)} file(s) differ from HEAD ({', '.join(dirty[:3])}{', …' if len(dirty) > 3 else ''}); "
            "they will be recorded as this session's first edits"
        )


@record_app.command("set")
def record_set(
    test_command: Annotated[str | None, typer.Option(help="How verification runs the repo's tests.", show_default=False)] = None,
    timeout_s: Annotated[float | None, typer.Option(help="Time limit for one test run.", show_default=False)] = None,
    install: InstallOpt = None,
    image: ImageOpt = None,
) -> None:
    """Change how QA will verify this session, before `prt record stop` writes its manifest."""
    now = _recorder().set(test_command=test_command, install=install, image=image, timeout_s=timeout_s)
    console.print(
        f"test command: {now['qa']['test_command']}; build steps: {'; '.join(now['environment'].get('install') or []) or 'none'}",
        markup=False,
    )


@record_app.command("stop")
def record_stop() -> None:
    """Record the last edits and finish the session: it becomes ready for ingest."""
    tid, events = _recorder().stop()
    console.print(f"recorded {tid}: {events} events, complete")


@record_app.command("abort")
def record_abort() -> None:
    """Discard the session: nothing of it is kept."""
    console.print(f"discarded {_recorder().abort()}")


@record_app.command("commit")
def record_commit() -> None:
    """Record the commit you just made with git (and the edits it holds)."""
    console.print(f"recorded commit {_recorder().commit()[:12]}")


@record_app.command("status")
def record_status() -> None:
    """The session being recorded here, if any."""
    rec = _recorder()
    if not rec.active:
        console.print("no session is being recorded here")
        raise typer.Exit(1)
    st = rec.status()
    console.print(f"recording {st['trace_id']} into {st['inbox']}: {st['events']} events in {st['chunks']} chunks so far")


@record_app.command("watch")
def record_watch(interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at the files.")] = 1.0) -> None:
    """Record edits as you save them, until Ctrl-C (or the session stops)."""
    rec = _recorder()
    if not rec.active:
        raise typer.BadParameter("no session is being recorded here; start one with `prt record start`")
    console.print(f"watching {rec.repo} for saved edits (Ctrl-C to stop watching)")

    def changed(warnings: list[str]) -> None:
        for w in warnings:
            err_console.print(f"prt: {w}")

    with contextlib.suppress(KeyboardInterrupt):
        rec.watch(interval, on_change=changed)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Run a command as usual (live output, same exit code) and record it: prt run -- CMD ..."""
    raise typer.Exit(_recorder().run(list(ctx.args)))


@app.command()
def note(
    kind: Annotated[str, typer.Argument(help="plan | hypothesis | observation | decision | next_step")],
    text: Annotated[str, typer.Argument(help="What you think, saw or decided.")],
) -> None:
    """Record rationale in the session being recorded."""
    from schemas.events import NOTE_KINDS

    if kind not in NOTE_KINDS:
        raise typer.BadParameter(f"{kind!r} is not one of {', '.join(NOTE_KINDS)}", param_hint="KIND")
    _recorder().note(kind, text)


def main() -> None:
    # Offline by default: no telemetry from Prefect or Great Expectations (override in the environment).
    for key, value in (("DO_NOT_TRACK", "1"), ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("GX_ANALYTICS_ENABLED", "false")):
        os.environ.setdefault(key, value)
    try:
        app()
    except PrtError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _PIPELINE_PACKAGES:
            message = (
                f"this command runs the pipeline, which is not installed here (no module {exc.name!r}); "
                "install it with: pip install 'pr-telemetry[pipeline]'"
            )
            err_console.print(f"[red]error:[/red] {escape(message)}")
            sys.exit(2)
        raise


_PIPELINE_PACKAGES = {
    "prefect",
    "polars",
    "deltalake",
    "pyarrow",
    "great_expectations",
    "docker",
    "openai",
    "pandas",
    "matplotlib",
}
"""What `pip install pr-telemetry` leaves out: only recording and uploading run without them."""


if __name__ == "__main__":
    main()
