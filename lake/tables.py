"""Delta tables of the lake: create from the specs in `schemas.tables`, evolve, and write exactly once.

Writes are keyword-only with explicit modes. Every commit carries custom metadata (run id,
batch id, code version); ingest appends also carry an app transaction `(app_id, 1)` so that a
batch resumed after a crash can see which of its tables it already committed and skip them.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Schema, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from client.storage import as_storage_error, is_local, join
from schemas.tables import TableSpec
from schemas.version import CODE_VERSION

__all__ = ["WRITER_PROPERTIES", "LakeTables", "delta_storage_options", "sql_string"]

_FREE_TEXT = ("command", "diff_unified", "extra", "manifest_extra", "message", "stderr", "stdout", "task_description", "text")
_UNIQUE = ("buffer_hash_after", "chain_head", "event_id", "line_sha256", "sha")
WRITER_PROPERTIES = WriterProperties(
    max_row_group_size=65_536,
    compression="ZSTD",
    column_properties={
        **{c: ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE") for c in _FREE_TEXT},
        **{c: ColumnProperties(dictionary_enabled=False) for c in _UNIQUE},
    },
)
"""Row groups of at most 64k rows: with one trace's events clustered (batches in trace order,
`maintain` z-orders by trace), a reader skips every row group but the trace's own by its min/max
statistics, even inside a large compacted file. ZSTD: smaller files than Snappy, still fast.
No dictionary for columns whose values rarely repeat (the writer would build one per row group,
then give it up) and no statistics for free text, which no reader filters on by range: 8 % less
time writing an events batch, same file size."""

_TABLE_CONFIG = {
    # App transactions (one per ingest batch) are only needed until a crashed batch is resumed.
    "delta.setTransactionRetentionDuration": "interval 30 days",
    "delta.logRetentionDuration": "interval 30 days",
}


class LakeTables:
    """The Delta tables under one lake URL."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        if is_local(self.url):
            self.url = os.path.abspath(self.url.removeprefix("file://"))
        self.storage_options = delta_storage_options(self.url)
        self._known: dict[str, DeltaTable] = {}

    def uri(self, name: str) -> str:
        return join(self.url, name)

    def exists(self, name: str) -> bool:
        # Not DeltaTable.is_deltatable: it holds the GIL during its I/O, which starves any
        # in-process S3 endpoint and stalls every other thread of the process meanwhile.
        return self.open(name) is not None

    def open(self, name: str) -> DeltaTable | None:
        """The table, freshly loaded, or None when it does not exist yet."""
        try:
            return DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except OSError as exc:
            raise as_storage_error(f"lake {self.url}", exc) from exc

    def ensure(self, spec: TableSpec) -> DeltaTable:
        """Create the table from its spec, or add the spec's new columns to an older table in place."""
        dt = self.open(spec.name)
        if dt is None:
            DeltaTable.create(
                self.uri(spec.name),
                spec.schema,
                mode="ignore",  # a concurrent run may have created it a moment ago
                partition_by=list(spec.partition_by),
                name=spec.name,
                description=spec.description,
                configuration={**_TABLE_CONFIG, "delta.dataSkippingStatsColumns": ",".join(spec.stats_columns)},
                storage_options=self.storage_options,
                commit_properties=CommitProperties(custom_metadata={"code_version": CODE_VERSION}),
            )
            dt = DeltaTable(self.uri(spec.name), storage_options=self.storage_options)
        have = set(dt.schema().to_arrow().names)
        missing = [f for f in spec.schema if f.name not in have]
        if missing:
            dt.alter.add_columns(list(Schema.from_arrow(pa.schema(missing)).fields))
            dt = DeltaTable(self.uri(spec.name), storage_options=self.storage_options)
        stats = ",".join(spec.stats_columns)
        if dt.metadata().configuration.get("delta.dataSkippingStatsColumns") != stats:
            dt.alter.set_table_properties({"delta.dataSkippingStatsColumns": stats})
            dt = DeltaTable(self.uri(spec.name), storage_options=self.storage_options)
        return dt

    def lookup(self, name: str, key: str, values: list[str], columns: list[str]) -> pa.Table:
        """Rows of `name` whose `key` is in `values` (only `columns`), read with file skipping."""
        dt = self.open(name)
        if dt is None or not values:
            return pa.table({c: pa.array([], pa.string()) for c in columns})
        return dt.to_pyarrow_dataset().to_table(columns=columns, filter=pc.field(key).isin(values))

    def committed(self, spec: TableSpec, app_id: str) -> bool:
        dt = self.open(spec.name)
        return dt is not None and dt.transaction_version(app_id) is not None

    def append(self, spec: TableSpec, data: pa.Table, *, app_id: str | None = None, metadata: dict[str, Any]) -> bool:
        """Append `data` in one commit. With `app_id`, at most once: returns False when that app
        transaction is already in the table (a resumed batch), True when this call wrote."""
        dt = self.ensure(spec)
        if app_id is not None and dt.transaction_version(app_id) is not None:
            return False
        props = CommitProperties(
            custom_metadata={"code_version": CODE_VERSION, **{k: str(v) for k, v in metadata.items()}},
            app_transactions=[Transaction(app_id, 1)] if app_id else None,
            max_commit_retries=20,
        )
        self._retry(
            lambda: write_deltalake(
                dt,
                _conform(dt, spec, data),
                mode="append",
                partition_by=list(spec.partition_by),
                commit_properties=props,
                writer_properties=WRITER_PROPERTIES,
            )
        )
        return True

    def merge_rows(self, spec: TableSpec, data: pa.Table, *, metadata: dict[str, Any], replace_when: str | None = None) -> int:
        """Insert the rows of `data` whose key is not in the table yet (a Delta MERGE on the spec's
        keys); with `replace_when` (a predicate on the target `t`), also replace matching rows for
        which it holds. Returns the rows inserted or replaced. Safe to repeat and to race: a
        concurrent commit makes the merge retry against the new table state."""
        if data.num_rows == 0:
            return 0
        # A nullable key column (scores.qa_verdict) matches null to null.
        predicate = " AND ".join(
            f"t.{k} IS NOT DISTINCT FROM s.{k}" if spec.schema.field(k).nullable else f"t.{k} = s.{k}" for k in spec.keys
        )
        props = CommitProperties(custom_metadata={"code_version": CODE_VERSION, **{k: str(v) for k, v in metadata.items()}})

        def merge() -> int:
            dt = self.ensure(spec)
            merger = dt.merge(
                _conform(dt, spec, data), predicate, source_alias="s", target_alias="t",
                writer_properties=WRITER_PROPERTIES, commit_properties=props,
            )  # fmt: skip
            if replace_when:
                merger = merger.when_matched_update_all(predicate=replace_when)
            result = merger.when_not_matched_insert_all().execute()
            return int(result.get("num_target_rows_inserted", 0)) + int(result.get("num_target_rows_updated", 0))

        return self._retry(merge, attempts=8)

    def delete_rows(self, spec: TableSpec, column: str, values: list[str], *, metadata: dict[str, Any]) -> int:
        """Delete the rows whose `column` is one of `values`; returns how many. Idempotent."""
        dt = self.open(spec.name)
        if dt is None or not values:
            return 0
        props = CommitProperties(custom_metadata={"code_version": CODE_VERSION, **{k: str(v) for k, v in metadata.items()}})
        deleted = 0
        for i in range(0, len(values), 500):
            part = values[i : i + 500]
            predicate = f"{column} IN ({', '.join(sql_string(v) for v in part)})"

            def delete(predicate: str = predicate) -> int:
                table = DeltaTable(self.uri(spec.name), storage_options=self.storage_options)
                return int(table.delete(predicate, commit_properties=props).get("num_deleted_rows", 0))

            deleted += self._retry(delete, attempts=8)
        return deleted

    def update_rows(self, spec: TableSpec, predicate: str, updates: dict[str, str], *, metadata: dict[str, Any]) -> None:
        """UPDATE ... SET updates WHERE predicate (SQL expressions), retried on conflicts."""
        if self.open(spec.name) is None:
            return
        props = CommitProperties(custom_metadata={"code_version": CODE_VERSION, **{k: str(v) for k, v in metadata.items()}})

        def update() -> None:
            table = DeltaTable(self.uri(spec.name), storage_options=self.storage_options)
            table.update(updates=updates, predicate=predicate, commit_properties=props)

        self._retry(update, attempts=8)

    @staticmethod
    def _retry(fn, attempts: int = 5):
        """`fn()`, again on a commit conflict or network trouble; past `attempts`, the project's
        transient error (never delta-rs' own, which cannot cross from a worker process: unpickled
        there, it hid the conflict behind a PicklingError and failed the whole ingest)."""
        for i in range(attempts):
            try:
                return fn()
            except (CommitFailedError, OSError) as exc:  # other writers, or the store
                if i == attempts - 1:
                    raise as_storage_error("lake", exc) from exc
                time.sleep(0.2 * 2**i)
        return None


def delta_storage_options(url: str) -> dict[str, str]:
    """Storage options for delta-rs, from the same environment that `fs_for` uses."""
    if not url.startswith("s3://"):
        return {}
    opts = {"AWS_S3_ALLOW_UNSAFE_RENAME": "false"}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        if os.environ.get(key):
            opts[key] = os.environ[key]
    opts.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def sql_string(value: str) -> str:
    """A SQL string literal (values here are trace ids, pseudonyms and dates; quotes are doubled anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _conform(dt: DeltaTable, spec: TableSpec, data: pa.Table) -> pa.Table:
    """`data` in the table's column order (an evolved table has its newer columns last), typed by the spec."""
    names = dt.schema().to_arrow().names
    return data.select(names).cast(pa.schema([spec.schema.field(n) for n in names]))
