"""Regenerate the parts of the docs that describe code, from the code: `python docs/generate.py`.

Each generated block sits between `<!-- BEGIN generated:NAME -->` and `<!-- END generated:NAME -->`
in a hand-written page, so the table is where its reader needs it. docs/tables.md is generated
whole. `--check` changes nothing and exits 1 naming every file that drifted
(tests/docs/test_docs.py runs it).

    quarantine-reasons   docs/ingest.md          schemas/errors.py QUARANTINE_REASON_MEANINGS
    verdicts             docs/verification.md    schemas/qa.py VERDICT_MEANINGS
    rubric               docs/judging.md         schemas/rubric.py RUBRIC
    heuristic-rules      docs/judging.md         tasks/judge/rules.py RULES
    settings             docs/configuration.md   schemas/settings.py (every field, its variable and default)
    cli                  docs/configuration.md   the `prt` command's subcommands and options
    measured             docs/performance.md     the `prt bench --json` results in docs/bench/
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))


def _escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def quarantine_reasons() -> str:
    from schemas.errors import QUARANTINE_REASON_MEANINGS

    rows = [f"| `{k}` | {_escape(v)} |" for k, v in QUARANTINE_REASON_MEANINGS.items()]
    return "\n".join(["| reason | meaning |", "| --- | --- |", *rows]) + "\n"


def verdicts() -> str:
    from schemas.qa import VERDICT_MEANINGS

    rows = [f"| `{k}` | {_escape(v)} |" for k, v in VERDICT_MEANINGS.items()]
    return "\n".join(["| verdict | meaning |", "| --- | --- |", *rows]) + "\n"


def rubric() -> str:
    from schemas.rubric import RUBRIC

    rows = [f"| `{d.name}` | {d.weight:.2f} | {_escape(d.question)} |" for d in RUBRIC]
    return "\n".join(["| dimension | weight | what a 5 looks like |", "| --- | --- | --- |", *rows]) + "\n"


def heuristic_rules() -> str:
    from tasks.judge.rules import render_markdown

    return render_markdown()


def settings() -> str:
    from pydantic_settings import BaseSettings

    from schemas import settings as s

    rows = []
    for cls in (s.Settings, s.IngestSettings, s.SandboxSettings, s.QaSettings, s.JudgeSettings):
        assert issubclass(cls, BaseSettings)
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            env = field.validation_alias if isinstance(field.validation_alias, str) else f"{prefix}{name}".upper()
            default = field.get_default()
            if hasattr(default, "get_secret_value"):
                default = "(a public development key)"
            shown = "" if default is None else f"`{default}`"
            rows.append(f"| `{env}` | {shown} | {_escape(field.description or '')} |")
    return "\n".join(["| variable | default | meaning |", "| --- | --- | --- |", *rows]) + "\n"


def cli() -> str:
    import click
    import typer

    from client.cli import app

    group = typer.main.get_command(app)
    out = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], [*path, name])
            return
        params = []
        for p in cmd.params:
            if isinstance(p, click.Argument):
                params.append(f"`{p.human_readable_name}`")
            elif not p.hidden and p.name != "help":
                params.append(f"`{p.opts[0]}`")
        summary = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
        out.append(f"| `prt {' '.join(path)}` | {_escape(summary)} | {' '.join(params)} |")

    walk(group, [])
    return "\n".join(["| command | what it does | arguments and options |", "| --- | --- | --- |", *out]) + "\n"


def measured() -> str:
    """A table per benchmark from the newest `prt bench --json` result of each kind in docs/bench/."""
    results = sorted((DOCS / "bench").glob("*.json"))
    if not results:
        return "No results yet: run `prt bench --json docs/bench/ingest.json` (and `--qa`, `--judge`, `--read`, `--export`, `--latency`, `--freshness`).\n"
    lines = ["| benchmark | result | measured on | file |", "| --- | --- | --- | --- |"]
    for path in results:
        r = json.loads(path.read_text())
        lines.append(f"| {path.stem} | {_escape(_summary(path.stem, r))} | {_escape(_machine(r))} | `docs/bench/{path.name}` |")
    return "\n".join(lines) + "\n"


def _summary(kind: str, r: dict) -> str:
    if "ingest_events_per_s" in r:
        text = (
            f"{r['ingest_events_per_s']:,} events/s end to end ({r['events']:,} events of ~{r['bytes_per_event']} bytes, "
            f"{r['workers']} workers, {r['ingest_s']} s); {r['ratio_to_floor']} of the floor ({r['floor_events_per_s']:,} events/s); "
            f"peak {r['ingest_peak_mb']:,} MiB PSS"
        )
        if "command_events_per_s" in r:
            text += (
                f". `prt ingest` as a user runs it, command start to exit ({r['command_workers']} workers, the default): "
                f"{r['command_events_per_s']:,} events/s ({r['command_s']} s)"
            )
        return text
    if "commands" in r:
        return (
            "with nothing to do, start to exit (median of "
            + f"{r['repeat']}): "
            + ", ".join(f"`prt {name}` {c['median_s']} s" for name, c in r["commands"].items())
        )
    if "to_rows" in r:
        e, q = r["to_rows"], r["to_qa_runs"]
        return (
            f"`prt serve`, {r['drops']} sessions dropped one every {r['every_s']} s into a backlog of {r['backlog_events']:,} events: "
            f"complete.json to its rows in the lake p50 {e.get('p50_s')} s, p95 {e.get('p95_s')} s; to a qa_runs row p50 {q.get('p50_s')} s, "
            f"p95 {q.get('p95_s')} s; the backlog drained at {r['backlog_events_per_s']:,} events/s meanwhile "
            f"(alone: {r['alone_events_per_s']:,} events/s)"
        )
    if "traces_per_min" in r:
        split = ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in (r.get("mean_split_s") or {}).items())
        text = f"{r['traces_per_min']} traces/min with {r['backend']}, {r['parallel']} sandboxes at once; per trace: {split}"
        if r.get("env"):
            e = r["env"]
            text += (
                f". With a recorded environment: built in {e['cold_build_s']} s (first trace {e['cold_trace_s']} s of QA), "
                f"then {e['cached_trace_s']} s of QA per trace (lookup {e['cached_lookup_s']} s)"
            )
        return text
    if "traces_per_s" in r:
        return f"{r['traces_per_s']:,} traces/s scored ({r['traces']:,} traces); the whole judge flow {r['flow_traces_per_s']:,} traces/s"
    if "before_maintain" in r:
        parts = []
        for when in ("before_maintain", "after_maintain"):
            t, d = r[when]["one_trace_events"], r[when]["one_day_scores"]
            parts.append(
                f"{when.replace('_', ' ')}: one trace's events {t['seconds'] * 1000:.0f} ms ({t['files_read']} of {r[when]['events_files']} files), "
                f"one day's scores {d['seconds'] * 1000:.0f} ms ({d['files_read']} of {r[when]['scores_files']} files)"
            )
        return "; ".join(parts) + f" ({r['events']:,} events)"
    if "runs" in r and r["runs"] and "records_per_s" in r["runs"][0]:
        return (
            "; ".join(
                f"{x['events']:,} events ({x['records']:,} records): {x['records_per_s']:,} records/s, "
                f"peak {x['peak_rss_mb']:,.0f} MB resident ({x['resting_rss_mb']:,.0f} MB at rest)"
                for x in r["runs"]
            )
            + f" ({r['format']}, to a dataset folder)"
        )
    return ", ".join(f"{k} {v}" for k, v in r.items() if isinstance(v, int | float))


def _machine(r: dict) -> str:
    m = r.get("machine") or {}
    fs = m.get("filesystem") or {}
    journal = "" if fs.get("journal") is None else (", journal" if fs["journal"] else ", no journal")
    return f"{m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, Python {m.get('python')}; {fs.get('type', '?')} at {fs.get('mount', '?')}{journal}"


BLOCKS = {
    "quarantine-reasons": ("ingest.md", quarantine_reasons),
    "verdicts": ("verification.md", verdicts),
    "rubric": ("judging.md", rubric),
    "heuristic-rules": ("judging.md", heuristic_rules),
    "settings": ("configuration.md", settings),
    "cli": ("configuration.md", cli),
    "measured": ("performance.md", measured),
}


def render() -> dict[Path, str]:
    """Every generated file's new text, by path."""
    from schemas.tables import render_markdown as tables_md

    out: dict[Path, str] = {DOCS / "tables.md": tables_md()}
    for name, (page, make) in BLOCKS.items():
        path = DOCS / page
        text = out.get(path) or path.read_text()
        pattern = re.compile(
            rf"(<!-- BEGIN generated:{re.escape(name)} .*?-->\n)(.*?)(<!-- END generated:{re.escape(name)} -->)", re.S
        )
        if not pattern.search(text):
            raise SystemExit(f"{page} has no block generated:{name}; add the BEGIN and END markers where the table belongs")
        out[path] = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(3), text)
    return out


def main(argv: list[str]) -> int:
    stale = []
    for path, text in render().items():
        if path.read_text() != text:
            stale.append(path.relative_to(DOCS.parent))
            if "--check" not in argv:
                path.write_text(text)
    if stale and "--check" in argv:
        print(f"generated docs drifted from the code: {', '.join(map(str, stale))}; run: python docs/generate.py")
        return 1
    for path in stale:
        print(f"regenerated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
