"""Docs that describe code are generated from it and must match it; the README stays a short
front page whose links all lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from schemas.tables import TABLES
from tests.conftest import REPO

DOC_PAGES = sorted((REPO / "docs").glob("*.md"))


def test_generated_docs_match_the_code():
    r = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_changed_rule_is_drift(monkeypatch, tmp_path):
    """The check is not a no-op: a verdict whose meaning changed makes docs/verification.md stale."""
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import generate
    finally:
        sys.path.remove(str(REPO / "docs"))
    from schemas import qa

    monkeypatch.setitem(qa.VERDICT_MEANINGS, "verified", "A changed meaning.")
    stale = [p for p, text in generate.render().items() if p.read_text() != text]
    assert [p.name for p in stale] == ["verification.md"]


def test_every_column_is_described():
    for spec in TABLES.values():
        for field in spec.schema:
            assert (field.metadata or {}).get(b"description"), f"{spec.name}.{field.name} has no description"


def test_the_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 8000
    assert "make demo" in readme and "make test" in readme
    assert not re.search(r"\d[\d,]*\s*events/s|traces/min|traces/s", readme), "measured numbers live in docs/performance.md"


@pytest.mark.parametrize("page", [REPO / "README.md", REPO / "SECURITY.md", *DOC_PAGES], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
