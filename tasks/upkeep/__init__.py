"""Upkeep of the lake: retention, compaction and erasure (maintain), and reprocessing traces from
the lake's own copies when the validation rules change (reprocess)."""

from tasks.upkeep.maintain import forget, retention
from tasks.upkeep.reprocess import readmit, recheck_ingested

__all__ = ["forget", "readmit", "recheck_ingested", "retention"]
