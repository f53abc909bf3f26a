"""The researcher's read API: every table as a polars LazyFrame, on a local lake or on S3.

    from lake import Lake
    lake = Lake("s3://bucket/lake")          # or Lake() for $PRT_LAKE / ./data/lake
    lake.events().filter(pl.col("trace_id") == "t-42").collect()

A table that does not exist yet reads as an empty frame with the right columns; a path with no
lake at all is an error, unless `Lake(url, create=True)`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date

import polars as pl
from fsspec import AbstractFileSystem

from client.storage import fs_for, join
from lake.tables import LakeTables
from schemas.errors import InvalidInput
from schemas.layout import ref_hex
from schemas.qa import VERDICTS
from schemas.rubric import DIMENSIONS
from schemas.tables import TABLES
from schemas.types import ARTIFACT_REF_RE

__all__ = ["Lake", "in_date_range", "repo_key"]


def in_date_range(col: str | pl.Expr, since: date | None, until: date | None) -> pl.Expr:
    """`col` (a column name or an expression) between `since` and `until`, both inclusive; an
    open end when None."""
    value = pl.col(col) if isinstance(col, str) else col
    expr = pl.lit(True)
    if since:
        expr &= value >= since
    if until:
        expr &= value <= until
    return expr


class Lake:
    """Read access to the lake's Delta tables."""

    def __init__(self, url: str | None = None, *, create: bool = False):
        """The lake at `url` ($PRT_LAKE, or ./data/lake, when None). A path with no lake under it
        is an InvalidInput (a typo must not read as an empty lake); `create=True` reads it as an
        empty one instead, as the pipeline's own stages do before the first ingest."""
        if url is None:
            from schemas.settings import get_settings

            url = get_settings().lake
        self.tables = LakeTables(url)
        self.url = self.tables.url
        if not create and not any(self.tables.exists(name) for name in TABLES):
            raise InvalidInput(
                "lake",
                f"no lake at {self.url} (none of its tables is there): check the path, or ingest into it first (prt ingest)",
            )

    def table(self, name: str, *, version: int | None = None) -> pl.LazyFrame:
        """Any table by name, optionally at an earlier Delta version (time travel)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        if not self.tables.exists(name):
            return pl.LazyFrame(schema=pl.from_arrow(TABLES[name].schema.empty_table()).schema)
        frame = pl.scan_delta(self.tables.uri(name), version=version, storage_options=self.tables.storage_options or None)
        have = frame.collect_schema()
        spec = pl.from_arrow(TABLES[name].schema.empty_table()).schema
        missing = [pl.lit(None, dtype=dtype).alias(col) for col, dtype in spec.items() if col not in have]
        return frame.with_columns(missing) if missing else frame  # a table last written by an older version

    def artifact(self, ref: str) -> bytes | None:
        """The stored bytes of an artifact (`sha256:<hex>`, as in `stdout_ref` or `snapshot_ref`),
        or None when the lake does not hold it (removed by retention or `forget`)."""
        hex_ = ref_hex(ref)
        if not ARTIFACT_REF_RE.match("sha256:" + hex_):
            raise ValueError(f"{ref!r} is not an artifact reference (sha256:<64 hex digits>)")
        fs, root = self._store
        try:
            return fs.cat_file(join(root, "artifacts", hex_))
        except FileNotFoundError:
            return None

    @functools.cached_property
    def _store(self) -> tuple[AbstractFileSystem, str]:
        return fs_for(self.url)

    def output(self, event: dict, name: str) -> str | None:
        """A cmd_run's `stdout` or `stderr` (`name`) as text, whole: the inline value, or the
        artifact its `<name>_ref` points at (outputs over the inline limit are stored as artifacts).
        A missing artifact reads as a line that says so, never as no output."""
        if event.get(name) is not None:
            return event[name]
        ref = event.get(f"{name}_ref")
        if not ref:
            return None
        data = self.artifact(ref)
        if data is None:
            return f"[{name} {ref} is no longer in the lake]"
        return data.decode("utf-8", "replace")

    def traces(self) -> pl.LazyFrame:
        return self.table("traces")

    def events(self) -> pl.LazyFrame:
        return self.table("events")

    def metrics(self) -> pl.LazyFrame:
        return self.table("metrics")

    def quarantine(self) -> pl.LazyFrame:
        return self.table("quarantine")

    def qa_runs(self) -> pl.LazyFrame:
        return self.table("qa_runs")

    def scores(self) -> pl.LazyFrame:
        return self.table("scores")

    def latest_qa(self) -> pl.LazyFrame:
        """The latest verdict of each trace: its most recently graded QA row (a re-graded row is newer
        than the run it re-graded)."""
        when = pl.coalesce("graded_at", "started_at")
        return self.qa_runs().group_by("trace_id").agg(pl.all().sort_by(when, "qa_id").last())

    def latest_scores(self) -> pl.LazyFrame:
        """Each judge's latest `scored` row per trace. A trace is scored again when its verdict
        changes, so older rows (the verdict the judge saw then) stay as history."""
        scored = self.scores().filter(pl.col("status") == "scored")
        return scored.group_by("trace_id", "judge_id").agg(pl.all().sort_by("scored_at").last())

    def judges(self) -> pl.DataFrame:
        """Every judge with rows in `scores`: judge_id, kind, model, traces it has rows for, traces
        it scored (status `scored`: not `error` or `unparsed`), its last row and last score. Judges
        that scored something come first, the latest first."""
        ok = pl.col("status") == "scored"
        return (
            self.scores()
            .group_by("judge_id", "judge_kind", "model")
            .agg(
                traces=pl.col("trace_id").n_unique(),
                scored=pl.col("trace_id").filter(ok).n_unique(),
                last_row=pl.col("scored_at").max(),
                last_scored=pl.col("scored_at").filter(ok).max(),
            )
            .sort(pl.col("scored") > 0, "last_scored", "last_row", "judge_id", descending=True, nulls_last=True)
            .collect()
        )

    def dataset(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        ingested_since: date | None = None,
        ingested_until: date | None = None,
        repo: str | Sequence[str] | None = None,
        task: str | Sequence[str] | None = None,
        verdict: str | Sequence[str] | None = None,
        min_score: float | None = None,
        judge: str | None = None,
        test_config_changed: bool | None = None,
    ) -> pl.LazyFrame:
        """One row per trace: the trace, its metrics, its latest QA verdict and its scores.

        Scores come as columns for one judge (`judge`: a judge_id or a kind such as "heuristic";
        default: the latest judge with `scored` rows; a judge whose run failed has none), its
        latest score of each trace, and as a `scores` list with every judge's overall.

        Filters, all optional and all inclusive: `since`/`until`, the day the session started
        (UTC); `ingested_since`/`ingested_until`, the day it was ingested; `repo` (an origin, with
        or without scheme and `.git`), `task` (a task id) and `verdict`, one value or several;
        `min_score`, the chosen judge's overall; `test_config_changed` (False keeps only traces
        whose verification ran on the repo's own test configuration). A value the lake does not
        know (a verdict that does not exist, a repo it holds no trace of) is an InvalidInput that
        names the known ones; `funnel` says how many traces each filter removed.
        """
        filters = self._filters(
            since=since, until=until, ingested_since=ingested_since, ingested_until=ingested_until, repo=repo, task=task,
            verdict=verdict, min_score=min_score, test_config_changed=test_config_changed,
        )  # fmt: skip
        out = self._joined(self._judge_id(judge, needed=judge is not None or min_score is not None))
        for _, expr in filters:
            out = out.filter(expr)
        return out.sort("trace_id")

    def funnel(self, *, judge: str | None = None, **filters) -> list[tuple[str, int]]:
        """What each filter of `dataset` (same arguments) leaves: [("traces in the lake", n),
        (filter, traces left after it), ...], applied in the order `dataset` applies them."""
        chosen = self._judge_id(judge, needed=judge is not None or filters.get("min_score") is not None)
        frame = self._joined(chosen).collect()
        steps = [("traces in the lake", frame.height)]
        for label, expr in self._filters(**filters):
            frame = frame.filter(expr)
            steps.append((label, frame.height))
        return steps

    def _joined(self, judge_id: str | None) -> pl.LazyFrame:
        traces = self.traces().select(
            "trace_id", "task_id", "task_title", "task_description", "repo_origin", "start_commit", "participant",
            "started_at", "ended_at", "event_count", "chain_head", "redaction_count", "ingest_date",
        )  # fmt: skip
        metrics = self.metrics().drop("ingest_date", "pipeline_run_id", "batch_id", "code_version")
        qa = self.latest_qa().select(
            "trace_id", "verdict", "fail_to_pass", "pass_to_fail", "qa_id", "test_config_changed", "snapshot_tree",
            pl.col("backend").alias("qa_backend"),
        )  # fmt: skip
        all_scores = self.latest_scores()
        per_judge = all_scores.group_by("trace_id").agg(scores=pl.struct("judge_id", "overall").sort_by("judge_id"))
        one = all_scores.filter(pl.col("judge_id") == (judge_id or "")).select(
            "trace_id", "judge_id", "overall", *DIMENSIONS, *[f"why_{d}" for d in DIMENSIONS],
            pl.col("pipeline_run_id").alias("score_run_id"),
        )  # fmt: skip
        out = traces.join(metrics, on="trace_id", how="left").join(qa, on="trace_id", how="left")
        return out.join(one, on="trace_id", how="left").join(per_judge, on="trace_id", how="left")

    def _filters(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        ingested_since: date | None = None,
        ingested_until: date | None = None,
        repo: str | Sequence[str] | None = None,
        task: str | Sequence[str] | None = None,
        verdict: str | Sequence[str] | None = None,
        min_score: float | None = None,
        test_config_changed: bool | None = None,
    ) -> list[tuple[str, pl.Expr]]:
        """(label, expression) for each filter given, its values checked against what exists."""
        out: list[tuple[str, pl.Expr]] = []
        if since or until:
            day = pl.col("started_at").dt.convert_time_zone("UTC").dt.date()
            out.append((_range_label("session date", since, until), in_date_range(day, since, until)))
        if ingested_since or ingested_until:
            out.append(
                (
                    _range_label("ingest date", ingested_since, ingested_until),
                    in_date_range("ingest_date", ingested_since, ingested_until),
                )
            )
        if repo is not None:
            wanted = {repo_key(r) for r in _as_list(repo)}
            known = self.traces().select(pl.col("repo_origin").unique()).collect()["repo_origin"].drop_nulls().to_list()
            matched = [o for o in known if repo_key(o) in wanted]
            missing = wanted - {repo_key(o) for o in matched}
            if missing:
                raise InvalidInput("repo", f"no trace of {', '.join(sorted(missing))} in {self.url}; repos there: {_some(known)}")
            out.append((f"repo {', '.join(_as_list(repo))}", pl.col("repo_origin").is_in(matched)))
        if task is not None:
            tasks = _as_list(task)
            known = self.traces().select(pl.col("task_id").unique()).collect()["task_id"].drop_nulls().to_list()
            missing = set(tasks) - set(known)
            if missing:
                raise InvalidInput(
                    "task", f"no trace of task {', '.join(sorted(missing))} in {self.url}; tasks there: {_some(known)}"
                )
            out.append((f"task {', '.join(tasks)}", pl.col("task_id").is_in(tasks)))
        if verdict is not None:
            verdicts = _as_list(verdict)
            if unknown := sorted(set(verdicts) - VERDICTS):
                raise InvalidInput("verdict", f"{', '.join(unknown)} is not a verdict; verdicts: {', '.join(sorted(VERDICTS))}")
            out.append((f"verdict {', '.join(verdicts)}", pl.col("verdict").is_in(verdicts)))
        if min_score is not None:
            out.append((f"score >= {min_score:g}", pl.col("overall") >= min_score))
        if test_config_changed is not None:
            out.append(
                (f"test configuration {'changed' if test_config_changed else 'unchanged'}",
                 pl.col("test_config_changed").fill_null(False) == test_config_changed)
            )  # fmt: skip
        return out

    def _judge_id(self, judge: str | None, *, needed: bool) -> str | None:
        """The judge whose scores `dataset` shows: `judge` (an id, or a kind for its latest judge
        with scores), else the latest judge with scores. InvalidInput when scores are `needed`
        (asked for by judge or by minimum score) and that judge has none: an empty export would
        say nothing about why."""
        judges = self.judges()
        with_scores = judges.filter(pl.col("scored") > 0)
        if judge is None:
            if with_scores.height:
                return with_scores["judge_id"][0]
            if needed:
                raise InvalidInput(
                    "min_score", f"no judge has scored a trace in {self.url} ({_describe(judges)}); run `prt judge`"
                )
            return None
        match = judges.filter((pl.col("judge_id") == judge) | (pl.col("judge_kind") == judge))
        if match.is_empty():
            raise InvalidInput("judge", f"no judge {judge!r} in {self.url}; judges there: {_describe(judges)}")
        chosen = match.filter(pl.col("scored") > 0)
        if chosen.is_empty():
            raise InvalidInput(
                "judge",
                f"judge {judge!r} has scored no trace (its rows are error or unparsed); judges there: {_describe(judges)}",
            )
        return chosen["judge_id"][0]


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _some(values: list[str], n: int = 20) -> str:
    values = sorted(values)
    more = f" and {len(values) - n} more" if len(values) > n else ""
    return (", ".join(values[:n]) or "none") + more


def repo_key(origin: str) -> str:
    """An origin as people write it: no scheme, user, `.git` or trailing slash, any case."""
    key = origin.strip().lower().split("://", 1)[-1].split("@", 1)[-1].rstrip("/").removesuffix(".git")
    return key.replace(":", "/", 1) if "/" not in key.split(":", 1)[0] else key  # git@host:owner/name


def _range_label(what: str, since: date | None, until: date | None) -> str:
    return f"{what} {since or '…'} to {until or '…'}"


def _describe(judges: pl.DataFrame) -> str:
    if judges.is_empty():
        return "none"
    return ", ".join(f"{r['judge_id']} ({r['scored']} of {r['traces']} scored)" for r in judges.iter_rows(named=True))
