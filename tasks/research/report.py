"""An HTML report of the lake: counts, plots (verdicts, score distributions per dimension, events
per type, sessions over time) and tables, written to a folder with its PNG plots. Matplotlib
renders the plots offline; the page has no external scripts or fonts."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from lake.read import Lake
from schemas.qa import VERDICTS
from schemas.rubric import DIMENSIONS, RUBRIC

__all__ = ["ReportData", "collect", "render_html", "render_markdown", "write_report"]

_VERDICT_ORDER = ["verified", "partial", "not_fixed", "regression", "replay_mismatch", "error"]
_VERDICT_COLOR = {
    "verified": "#2e7d32",
    "partial": "#f9a825",
    "not_fixed": "#c62828",
    "regression": "#6a1b9a",
    "replay_mismatch": "#455a64",
    "error": "#9e9e9e",
}


class ReportData:
    """Everything the report shows, read once from the lake."""

    def __init__(self, lake: Lake):
        self.lake_url = lake.url
        self.generated = datetime.now(UTC)
        self.traces = lake.traces().select("trace_id", "started_at", "ingest_date", "event_count").collect()
        self.quarantine = (
            lake.quarantine()
            .filter(pl.col("readmitted_by").is_null())
            .group_by("reason")
            .len()
            .sort("len", descending=True)
            .collect()
        )
        self.verdicts = lake.latest_qa().group_by("verdict").len().collect()
        self.events = lake.events().group_by("type").len().sort("type").collect()
        judges = lake.judges().filter(pl.col("scored") > 0)
        self.judge_id = judges["judge_id"][0] if judges.height else None
        self.scores = (
            lake.latest_scores()
            .filter(pl.col("judge_id") == (self.judge_id or ""))
            .select("trace_id", "overall", *DIMENSIONS)
            .collect()
        )
        self.top = (
            lake.dataset(judge=self.judge_id)
            .select("trace_id", "task_title", "verdict", "overall")
            .sort("overall", descending=True, nulls_last=True)
            .head(10)
            .collect()
            if self.judge_id
            else pl.DataFrame()
        )

    @property
    def verdict_counts(self) -> dict[str, int]:
        counts = dict(self.verdicts.iter_rows())
        return {v: counts.get(v, 0) for v in _VERDICT_ORDER if v in VERDICTS}


def collect(lake: Lake) -> ReportData:
    return ReportData(lake)


def _plots(data: ReportData, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    files = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files[name.removesuffix(".png")] = name

    counts = data.verdict_counts
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(list(counts), list(counts.values()), color=[_VERDICT_COLOR[v] for v in counts])
    ax.set_title("QA verdicts (latest run per trace)")
    ax.set_ylabel("traces")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", rotation=20)
    save(fig, "verdicts.png")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    if data.scores.height:
        ax.boxplot([data.scores[d].to_list() for d in ("overall", *DIMENSIONS)], showmeans=True)
        ax.set_xticks(range(1, len(DIMENSIONS) + 2), ["overall", *[d.replace("_", "\n") for d in DIMENSIONS]], fontsize=8)
    ax.set_ylim(-0.2, 5.2)
    ax.set_title(f"Score distributions ({data.judge_id or 'no scores yet'})")
    save(fig, "scores.png")

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(data.events["type"].to_list(), data.events["len"].to_list(), color="#1565c0")
    ax.set_title("Events per type")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(axis="x", rotation=20)
    save(fig, "events.png")

    fig, ax = plt.subplots(figsize=(8, 3.2))
    if data.traces.height:
        per_day = data.traces.group_by(pl.col("started_at").dt.date().alias("day")).len().sort("day")
        ax.bar(per_day["day"].to_list(), per_day["len"].to_list(), color="#00838f", width=0.8)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_title("Sessions over time (by session start)")
    ax.set_ylabel("sessions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    save(fig, "sessions.png")
    return files


def _table(df: pl.DataFrame) -> str:
    if df.is_empty():
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else (f'{v:.2f}' if isinstance(v, float) else str(v)))}</td>" for v in r)
        + "</tr>"
        for r in df.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(data: ReportData, plots: dict[str, str]) -> str:
    verified = data.verdict_counts.get("verified", 0)
    cards = [
        ("traces", data.traces.height),
        ("events", int(data.events["len"].sum()) if data.events.height else 0),
        ("verified", verified),
        ("quarantined", int(data.quarantine["len"].sum()) if data.quarantine.height else 0),
        ("mean score", f"{data.scores['overall'].mean():.2f}" if data.scores.height else "-"),
    ]
    rubric = "".join(f"<tr><td>{d.name}</td><td>{d.weight:.2f}</td><td>{html.escape(d.question)}</td></tr>" for d in RUBRIC)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PR Telemetry lake report</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px; color: #1b1b1b; }}
h1 {{ margin-bottom: .2rem; }} .muted {{ color: #666; }}
.cards {{ display: flex; gap: 1rem; margin: 1.5rem 0; }}
.card {{ flex: 1; border: 1px solid #ddd; border-radius: 8px; padding: .8rem 1rem; }}
.card b {{ display: block; font-size: 1.8rem; }}
.grid {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }}
img {{ max-width: 100%; border: 1px solid #eee; border-radius: 6px; }}
table {{ border-collapse: collapse; width: 100%; font-size: .9rem; margin-bottom: 1rem; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #eee; }}
th {{ background: #f5f5f5; }}
</style></head><body>
<h1>PR Telemetry lake report</h1>
<p class="muted">{html.escape(data.lake_url)} · generated {data.generated:%Y-%m-%d %H:%M} UTC</p>
<div class="cards">{"".join(f'<div class="card"><b>{v}</b>{k}</div>' for k, v in cards)}</div>
<div class="grid">
<img src="{plots["verdicts"]}" alt="QA verdicts"><img src="{plots["events"]}" alt="Events per type">
</div>
<h2>Scores</h2><img src="{plots["scores"]}" alt="Score distributions per dimension">
<h2>Sessions over time</h2><img src="{plots["sessions"]}" alt="Sessions over time">
<div class="grid"><div><h2>Top traces</h2>{_table(data.top)}</div>
<div><h2>Quarantine reasons</h2>{_table(data.quarantine.rename({"len": "traces"}))}</div></div>
<h2>Rubric</h2><table><thead><tr><th>dimension</th><th>weight</th><th>a 5 looks like</th></tr></thead><tbody>{rubric}</tbody></table>
</body></html>
"""


def render_markdown(data: ReportData) -> str:
    lines = [
        "# Lake report",
        "",
        f"- traces: **{data.traces.height}**, events: {int(data.events['len'].sum()) if data.events.height else 0}",
        "- verdicts: " + ", ".join(f"{k} {v}" for k, v in data.verdict_counts.items() if v),
        "- quarantined: " + (", ".join(f"{r} {n}" for r, n in data.quarantine.iter_rows()) or "none"),
    ]
    if data.scores.height:
        lines += ["", f"Scores by `{data.judge_id}`:", "", "| dimension | mean | min | max |", "| --- | --- | --- | --- |"]
        for d in ("overall", *DIMENSIONS):
            s = data.scores[d]
            lines.append(f"| {d} | {s.mean():.2f} | {s.min():.2f} | {s.max():.2f} |")
    return "\n".join(lines) + "\n"


def write_report(lake: Lake, out: str | Path) -> tuple[Path, str]:
    """report.html and its plots under `out`; returns the page's path and a markdown summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = collect(lake)
    plots = _plots(data, out)
    page = out / "report.html"
    page.write_text(render_html(data, plots), encoding="utf-8")
    return page, render_markdown(data)
