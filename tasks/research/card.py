"""The dataset card of an export: a Hugging Face `README.md` (YAML header with configs, splits and
features, then what the set holds and where it came from), so that `datasets.load_dataset(folder)`
loads every split and a reader knows what they are looking at."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import yaml

from lake.read import Lake
from schemas.rubric import DIMENSIONS
from schemas.tables import TABLES
from schemas.version import CODE_VERSION

if TYPE_CHECKING:
    from tasks.research.export import ExportReport

__all__ = ["dataset_card", "hf_features"]

_DTYPES = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}


def _feature(t: pa.DataType):
    if t in _DTYPES:
        return {"dtype": _DTYPES[t]}
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in t]}
    if pa.types.is_list(t):
        inner = _feature(t.value_type)
        return {"list": inner["dtype"] if "dtype" in inner else inner["struct"]}
    raise TypeError(f"no dataset-card feature for {t}")


def hf_features(schema: pa.Schema) -> list[dict]:
    """`schema` in the card's `dataset_info.features` form."""
    return [{"name": f.name, **_feature(f.type)} for f in schema]


def _table(rows: list[tuple], head: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def dataset_card(
    report: ExportReport, lake: Lake, ds: pl.DataFrame, *, filters: dict, judge: str | None, dedup: bool, license: str
) -> str:
    from tasks.research.export import EXPORT_SCHEMA

    header = {
        "license": license,
        "pretty_name": "PR Telemetry debugging sessions",
        "task_categories": ["text-generation"],
        "tags": ["code", "debugging", "program-repair", "agent-trajectories"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.{report.fmt}"} for s, n in report.counts.items() if n],
            }
        ],
        "dataset_info": {
            "features": hf_features(EXPORT_SCHEMA),
            "splits": [{"name": s, "num_examples": n} for s, n in report.counts.items() if n],
        },
    }
    verdicts = ds.group_by("verdict").len().sort("verdict", nulls_last=True).rows()
    scored = ds.filter(pl.col("overall").is_not_null())
    judge_ids = sorted(set(scored["judge_id"].to_list()))
    versions = []
    for name in TABLES:
        table = lake.tables.open(name)
        versions.append((name, "—" if table is None else table.version()))
    given = {k: v for k, v in filters.items() if v is not None}
    body = [
        "# PR Telemetry debugging sessions",
        "",
        "Real developers' bug-fixing sessions (notes, edits, commands, test runs, commits), each verified by",
        "running the repository's tests before and after the recorded edits in a sandbox, and scored on a",
        "six-part rubric. One record per session; the record format is in `tasks/research/export.py`.",
        "",
        "## Splits",
        "",
        _table([(s, n) for s, n in report.counts.items()], ("split", "records")),
        "",
        "A split with no records has no files and is not listed in the header.",
        "",
        (
            f"Split by `{report.split_by}` with a stable hash of it (shares: "
            f"{', '.join(f'{k} {v:g}' for k, v in (report.shares or {}).items())}): no {report.split_by} is in two "
            "splits, and adding sessions to the lake never moves an old one."
            if report.split_by
            else "One split."
        ),
        "",
        "## What the selection holds",
        "",
        f"{ds.height} sessions matched the filters. {report.dedup.in_groups()} of them have a duplicate "
        f"({report.dedup.duplicated_groups()} groups: {report.dedup.exact_pairs} exact and {report.dedup.near_pairs} near "
        f"pairs); {report.dropped} were left out as duplicates of a better-scored one. Their verdicts:",
        "",
        _table([(v or "not verified", n) for v, n in verdicts], ("verdict", "sessions")),
        "",
    ]
    if scored.height:
        stats = [
            (c, f"{scored[c].min():.2f}", f"{scored[c].mean():.2f}", f"{scored[c].max():.2f}") for c in ["overall", *DIMENSIONS]
        ]
        body += [
            f"Scores by {', '.join(judge_ids)} ({scored.height} sessions scored):",
            "",
            _table(stats, ("score", "min", "mean", "max")),
            "",
        ]
    body += [
        "## Provenance",
        "",
        f"- filters: {', '.join(f'{k}={v}' for k, v in sorted(given.items())) or 'none'}; judge: {judge or 'the latest with scores'}; "
        f"dedup: {'best-scored of each group' if dedup else 'off (every record has its dedup_group)'}",
        f"- lake: `{lake.url}`, table versions: {', '.join(f'{n} {v}' for n, v in versions)}",
        f"- code version: {CODE_VERSION}",
        "- participants appear only as keyed pseudonyms (`participant`); secrets were redacted at ingest",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("{report.out}")',
        "```",
        "",
    ]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)
