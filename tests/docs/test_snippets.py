"""Docs that run: every ```python and ```bash block of README.md and docs/ is executed here, or says
in a `<!-- snippet: skip: WHY -->` line above it why it cannot be (a server that runs for ever, a
command that runs this suite). A missing import, a renamed function or an SDK example whose
trace would be quarantined fails the suite.

Blocks run in a scratch folder holding `data/lake` (the examples' lake, verified and scored) and
`.venv` (this checkout's), so the README's `.venv/bin/prt` and `Lake("data/lake")` work as they do
in a clone after `make demo`. The python blocks of a page run in order in one namespace, as a
reader would paste them. A few names the docs leave to the reader are filled in (SETUP), and
placeholders are replaced (REPLACE): both are listed here, so what is not run as written is plain.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?:<!-- snippet: (?P<note>[^>]*?) -->\n)?^```(?P<lang>python|bash)\n(?P<body>.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[Path, int, str, str | None, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in _BLOCK.finditer(text):
            out.append((page, text.count("\n", 0, m.start("lang")) + 1, m["lang"], m["note"], m["body"]))
    return out


BLOCKS = _blocks()
SETUP = {
    # writing-traces.md's SDK example: the output and texts of a real fix of the calculator repo
    "writing-traces.md": (
        "from pathlib import Path\n"
        "output = '1 failed, 2 passed'\n"
        "before_text = Path('stats.py').read_text()\n"
        "after_text = before_text.replace('(len(values) - 1)', 'len(values)')\n"
    ),
}
REPLACE = {
    "writing-traces.md": [
        ("s3://bucket/inbox", "{inbox}"),
        ("prt record start --task-id", "prt record start --consent yes --task-id"),
    ],
}


def _id(block) -> str:
    return f"{block[0].name}:{block[1]}"


@pytest.fixture
def scratch(tmp_path, examples_lake, monkeypatch):
    """A clone-like folder: the calculator repo as a git repo, data/lake, .venv, an inbox."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES.parent / "repos" / "calculator", work)
    (work / "data").mkdir()
    (work / "data" / "lake").symlink_to(examples_lake)
    (work / ".venv").symlink_to(REPO / ".venv")
    (work / ".gitignore").write_text(".venv\ndata/\n")  # as in any clone
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
        subprocess.run(["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.org", *args], cwd=work, check=True)
    monkeypatch.chdir(work)
    return work, tmp_path / "inbox"


def _editor(folder: Path) -> Path:
    """An $EDITOR that makes the walkthrough's fix of stats.py."""
    editor = folder / "editor"
    editor.write_text("#!/bin/sh\nsed -i 's/(len(values) - 1)/len(values)/' \"$1\"\n")
    editor.chmod(0o755)
    return editor


def _text(block, inbox: Path) -> str:
    body = block[4]
    for old, new in REPLACE.get(block[0].name, []):
        body = body.replace(old, new.format(inbox=inbox))
    return body


def test_every_block_is_found_and_any_skip_says_why():
    assert len(BLOCKS) >= 8
    for block in BLOCKS:
        note = block[3]
        assert note is None or (note.startswith("skip: ") and len(note) > 20), f"{_id(block)}: '{note}' is not 'skip: WHY'"


@pytest.mark.parametrize("block", BLOCKS, ids=_id)
def test_the_block_runs(block, scratch, cli_env, prefect_api):
    page, _, lang, note, _ = block
    if note:
        pytest.skip(note.removeprefix("skip: "))
    work, inbox = scratch
    env = {
        **cli_env,
        "PRT_INBOX": str(inbox),
        "PRT_LAKE": str(work / "data" / "lake"),
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
        "EDITOR": str(_editor(work.parent)),  # the reader's edit in the recorder walkthrough
        "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.org",
        "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.org",
    }  # fmt: skip
    if lang == "bash":
        # Stop at the first failing command, except `prt run -- CMD`, which passes on CMD's exit code
        # (a walkthrough runs the failing tests first, on purpose).
        trap = """trap '[[ $BASH_COMMAND == "prt run --"* ]] || { echo "failed: $BASH_COMMAND" >&2; exit 1; }' ERR\n"""
        script = trap + _text(block, inbox)
        r = subprocess.run(["bash", "-uo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{_id(block)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    else:
        earlier = [b for b in BLOCKS if b[0] == page and b[2] == "python" and b[1] <= block[1] and not b[3]]
        namespace: dict = {}
        os.environ.update({k: env[k] for k in ("PRT_INBOX", "PRT_LAKE")})
        try:
            exec(compile(SETUP.get(page.name, ""), f"{page.name}:setup", "exec"), namespace)
            for b in earlier:
                exec(compile(_text(b, inbox), _id(b), "exec"), namespace)
        finally:
            for k in ("PRT_INBOX", "PRT_LAKE"):
                os.environ.pop(k, None)
    if inbox.exists():  # the block wrote a trace: it must be one the lake accepts, not a quarantine row
        from flows.ingest import ingest_inbox

        summary = ingest_inbox(inbox=str(inbox), lake=str(work / "fresh-lake"), grace_period_s=0)
        assert summary.quarantined == [] and summary.ingested, f"{_id(block)}: {summary.quarantined}"
