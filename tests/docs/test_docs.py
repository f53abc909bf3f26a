"""Docs that are generated from code must match it."""

from __future__ import annotations

from schemas.tables import TABLES, render_markdown
from tests.conftest import REPO


def test_tables_doc_matches_the_schemas():
    assert (REPO / "docs" / "tables.md").read_text() == render_markdown(), "regenerate: python -m schemas.tables > docs/tables.md"


def test_every_column_is_described():
    for spec in TABLES.values():
        for field in spec.schema:
            assert (field.metadata or {}).get(b"description"), f"{spec.name}.{field.name} has no description"
