"""Ingest: complete traces in the inbox become validated, redacted rows of the lake's tables.

inbox       list the inbox, classify each trace (ready, pending, rejected, expired), load objects
claims      claim traces and batches exactly once (exclusive creates), leases, take-over
schedule    plan batches and hand them out as the inbox is scanned (the flow's loop)
assemble    parse and check one trace (pydantic, the hash chain, limits); fastpath: the same, columnar
frames      rows of traces and events; metrics: the metrics table
redact      secrets out of every text field; privacy: participant pseudonyms
validate    table-level rules (Great Expectations)
archive     raw objects into <lake>/raw/, rejected ones into <lake>/quarantine/
batch       one batch through every stage: prepare, build, commit, archive, clean
pool        batches in worker processes forked from a warm fork server
"""

from tasks.ingest.batch import BatchReport, IngestSummary, run_batch
from tasks.ingest.schedule import Schedule

__all__ = ["BatchReport", "IngestSummary", "Schedule", "run_batch"]
