"""What QA keeps on its host between runs, and its cleaning.

    <workdir>/prt-snapshots/<sha256>   a trace's snapshot, extracted once, reused by every run of it
    <workdir>/prt-envs/<env_id>/       an environment; one built with the repo's editable installs
                                       holds what the repo's build wrote (its metadata, its README
                                       as long description), so it belongs to that repo's traces

Both are the participants' content. `prune_qa_cache` removes what the lake no longer holds (a
forgotten participant, an expired trace) and what a killed run left half-written; QA calls it at
the start of each run and `forget-participant` at its end, so an erasure reaches the QA host too.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lake.read import Lake
from schemas.settings import SandboxSettings
from tasks.qa.sandbox.base import remove_tree

__all__ = ["CacheCleaning", "live_snapshots", "prune_qa_cache", "qa_workdir"]

STALE_S = 6 * 3600.0
"""A half-written folder (`.extract-*`, `.building-*`) this old belongs to no live run: the longest
environment build is bounded by its timeout (15 minutes by default)."""


def qa_workdir(settings: SandboxSettings) -> Path:
    return Path(settings.workdir or tempfile.gettempdir())


def live_snapshots(lake: Lake) -> set[str]:
    """Hex sha256 of every snapshot a trace in the lake points to."""
    refs = lake.traces().select(pl.col("snapshot_ref").str.strip_prefix("sha256:")).collect()["snapshot_ref"]
    return set(refs.drop_nulls().to_list())


@dataclass
class CacheCleaning:
    snapshots: int = 0
    environments: int = 0
    leftovers: int = 0

    def __str__(self) -> str:
        return f"{self.snapshots} snapshots, {self.environments} environments, {self.leftovers} half-written folders"


def prune_qa_cache(
    workdir: Path, *, live: set[str] | None = None, erased: set[str] = frozenset(), stale_s: float = STALE_S
) -> CacheCleaning:
    """Remove from QA's cache under `workdir`: the snapshots in `erased` (hex sha256 digests) and
    the environments built from them, now; those not in `live` (every snapshot the lake holds) once
    `stale_s` old (a run that started after `live` was read may be using a newer one); and
    half-written folders once `stale_s` old."""
    done = CacheCleaning()
    now = time.time()

    def doomed(digest: str | None, path: Path) -> bool:
        if digest is None:
            return False
        if digest in erased:
            return True
        return live is not None and digest not in live and now - path.lstat().st_mtime >= stale_s

    for root, prefix in ((workdir / "prt-snapshots", ".extract-"), (workdir / "prt-envs", ".building-")):
        if not root.is_dir():
            continue
        for path in root.iterdir():
            if path.name.startswith(prefix):
                if now - path.lstat().st_mtime >= stale_s:
                    remove_tree(path)
                    done.leftovers += 1
            elif root.name == "prt-snapshots" and path.is_dir() and doomed(path.name, path):
                remove_tree(path)
                done.snapshots += 1
            elif root.name == "prt-envs" and path.is_dir() and doomed(_built_from(path), path):
                remove_tree(path)
                done.environments += 1
    return done


def _built_from(env: Path) -> str | None:
    """The snapshot an environment with editable installs was built from (None: it holds nothing of a repo)."""
    try:
        spec = json.loads((env / "spec.json").read_text())
    except (OSError, ValueError):
        return None
    return spec.get("snapshot", "") if spec.get("editable") else None
