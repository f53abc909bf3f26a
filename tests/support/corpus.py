"""The bad-input corpus: named traces that each break exactly one rule, built byte by byte.

`RawTrace` writes inbox objects directly (no SDK checks), computing the chain and complete.json
from whatever lines it holds, so a case only breaks what it means to break. `CASES` maps a case
name to (builder, expected reason); every builder writes one trace (or stray object) into an inbox.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.chain import chain_head
from tests.support.tracegen import SNAPSHOT, T0, manifest, put

LIMITS = {
    "PRT_MAX_CHUNK_BYTES": str(4 * 2**20),
    "PRT_MAX_TRACE_BYTES": str(6 * 2**20),
    "PRT_MAX_LINE_BYTES": str(2**20),
    "PRT_MAX_ARTIFACT_BYTES": str(2 * 2**20),
}
"""Ingest limits the corpus runs under (the good traces are far below them)."""


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def good_events(n: int = 4) -> list[dict]:
    evs = [
        {"type": "rationale_note", "kind": "hypothesis", "text": "the divisor is off by one"},
        {"type": "cmd_run", "command": "python -m pytest -q", "exit_code": 1, "duration_s": 0.4, "stdout": "1 failed\n"},
        {"type": "test_run", "framework": "pytest", "command": "pytest", "passed": 2, "failed": 1, "duration_s": 0.4},
        {"type": "commit", "sha": "abcdef1", "message": "fix"},
    ][:n]
    return [{"id": f"e{i}", "seq": i, "ts_client_s": T0 + i, **e} for i, e in enumerate(evs)]


@dataclass
class RawTrace:
    trace_id: str
    events: list[dict] = field(default_factory=good_events)
    lines: list[bytes] | None = None
    """Exact lines; derived from `events` when None."""
    chunk_size: int = 2
    gzip_chunks: bool = False
    manifest: dict | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)
    snapshot: bytes = SNAPSHOT
    complete: dict | None = None
    """Overrides merged into complete.json."""
    chunk_bytes: dict[int, bytes] = field(default_factory=dict)
    """Replace chunk i's bytes as written (after the chain was computed)."""
    extra_objects: dict[str, bytes] = field(default_factory=dict)
    omit: tuple[str, ...] = ()

    def build(self) -> dict[str, bytes]:
        lines = self.lines if self.lines is not None else [_line(e) for e in self.events]
        objs: dict[str, bytes] = {}
        snap_hex = hashlib.sha256(self.snapshot).hexdigest()
        m = self.manifest or manifest(self.trace_id)
        m.setdefault("repo", {}).setdefault("snapshot", f"sha256:{snap_hex}")
        objs["manifest.json"] = json.dumps(m).encode()
        objs[f"artifacts/{snap_hex}"] = self.snapshot
        for k, v in self.artifacts.items():
            objs[f"artifacts/{k}"] = v
        chunks = [lines[i : i + self.chunk_size] for i in range(0, len(lines), self.chunk_size)] or [[]]
        for i, chunk in enumerate(chunks):
            raw = b"".join(line + b"\n" for line in chunk)
            body = self.chunk_bytes.get(i, gzip.compress(raw, mtime=0) if self.gzip_chunks else raw)
            objs[f"chunks/{i:06d}-c{i}.jsonl" + (".gz" if self.gzip_chunks else "")] = body
        complete = {
            "chunk_count": len(chunks),
            "event_count": len(lines),
            "chain_head": chain_head(self.trace_id, lines),
            "ended_at": "2025-10-09T09:00:00Z",
        }
        complete.update(self.complete or {})
        objs["complete.json"] = json.dumps(complete).encode()
        objs.update(self.extra_objects)
        for k in self.omit:
            objs.pop(k, None)
        return objs

    def write(self, inbox: str) -> None:
        objs = self.build()
        # Same order as a real client: everything else first, complete.json last.
        for k in sorted(objs, key=lambda k: k == "complete.json"):
            put(inbox, f"{self.trace_id}/{k}", objs[k])


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _two_members(first: list, second: list) -> bytes:
    """A snapshot whose tar goes on in a second gzip member: a reader that stops at the first
    member's end sees only `first`."""
    import gzip

    raw = gzip.decompress(_tar(first)).rstrip(b"\0")
    return gzip.compress(raw + b"\0" * (-len(raw) % 512)) + _tar(second)


def _pax_bomb() -> bytes:
    """40 KiB of upload that tarfile would turn into a dict of 20,000 keys copied into 2,000 entries."""
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={f"g{i}": "" for i in range(20_000)}
    ) as tar:
        for i in range(2000):
            tar.addfile(tarfile.TarInfo(f"f{i}.py"))
    return buf.getvalue()


def _member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def _edit_at(seq: int, file_path: str) -> list[dict]:
    """The good events up to `seq`, then a file_edit of `file_path`."""
    edit = {"id": f"e{seq}", "seq": seq, "ts_client_s": T0 + seq, "type": "file_edit", "file_path": file_path}
    return [*good_events(seq), {**edit, "diff_unified": "", "buffer_hash_after": "a" * 64}]


def _with(tid: str, **kw) -> Callable[[str], None]:
    return lambda inbox: RawTrace(tid, **kw).write(inbox)


def _event(i: int, **over) -> dict:
    e = good_events()[i]
    e.update(over)
    return {k: v for k, v in e.items() if v is not None}


def _drop(i: int, *keys: str) -> list[dict]:
    evs = good_events()
    for k in keys:
        evs[i].pop(k)
    return evs


def _replace(i: int, **over) -> list[dict]:
    evs = good_events()
    evs[i] = _event(i, **over)
    return evs


def _lines_with(i: int, line: bytes) -> list[bytes]:
    lines = [_line(e) for e in good_events()]
    lines[i] = line
    return lines


def _gz_bomb() -> bytes:
    return gzip.compress(b"0" * (40 * 2**20), compresslevel=9, mtime=0)  # 40 MiB of zeros in ~40 KiB


def _stray_root(inbox: str) -> None:
    put(inbox, "README.txt", b"not a trace")


def _symlinked_artifact(inbox: str) -> None:
    RawTrace("bad-symlink-artifact").write(inbox)
    os.symlink("/etc/passwd", os.path.join(inbox, "bad-symlink-artifact", "artifacts", "a" * 64))


def _unsafe_id(name: str) -> Callable[[str], None]:
    def build(inbox: str) -> None:
        for k, v in RawTrace(name).build().items():
            put(inbox, f"{name}/{k}", v)

    return build


TOKEN = "ghp_Zx8Kq2Lm5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5A"
"""A GitHub token (made up): what a name must not hold."""


def _manifest_with(tid: str, path: tuple[str, ...], value) -> dict:
    m = manifest(tid)
    node = m
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    return m


def _chunk_renamed(tid: str, new_id: str) -> Callable[[str], None]:
    def build(inbox: str) -> None:
        for k, v in RawTrace(tid).build().items():
            put(inbox, f"{tid}/{k.replace('-c0.jsonl', f'-{new_id}.jsonl')}", v)

    return build


def _gzip_output(tid: str, data: bytes) -> Callable[[str], None]:
    """A trace whose first command's stdout is the artifact `data`."""
    ref = hashlib.sha256(data).hexdigest()
    events = _replace(1, stdout=None, stdout_ref=f"sha256:{ref}")
    return _with(tid, events=events, artifacts={ref: data})


def _line_with_repeat(i: int, key: str, first: str) -> bytes:
    """Event i's line with `key` written twice: first `first`, then its real value."""
    line = _line(good_events()[i])
    return line.replace(b"{", b"{" + json.dumps(key).encode() + b":" + json.dumps(first).encode() + b",", 1)


def _manifest_repeat(tid: str) -> Callable[[str], None]:
    def build(inbox: str) -> None:
        objs = RawTrace(tid).build()
        objs["manifest.json"] = objs["manifest.json"].replace(
            b'{"participant_id": ', b'{"participant_id": "someone-else", "participant_id": ', 1
        )
        for k in sorted(objs, key=lambda k: k == "complete.json"):
            put(inbox, f"{tid}/{k}", objs[k])

    return build


BIG_OUTPUT = "x" * (3 * 2**20)
CASES: dict[str, tuple[Callable[[str], None], str]] = {
    # JSON and encoding
    "truncated-line": (_with("bad-truncated-line", lines=_lines_with(1, b'{"id":"e1","seq":1,"ts_cl')), "bad_json"),
    "empty-line": (_with("bad-empty-line", lines=_lines_with(1, b"")), "bad_json"),
    "nul-bytes": (_with("bad-nul-bytes", lines=_lines_with(0, _line(good_events()[0])[:-2] + b'\x00"}')), "bad_json"),
    "invalid-utf8": (
        _with("bad-invalid-utf8", lines=_lines_with(0, _line(good_events()[0]).replace(b"divisor", b"divis\xff\xfer"))),
        "not_utf8",
    ),
    "utf8-bom": (_with("bad-utf8-bom", lines=_lines_with(0, b"\xef\xbb\xbf" + _line(good_events()[0]))), "bad_json"),
    "deeply-nested": (
        _with(
            "bad-deeply-nested",
            lines=_lines_with(3, _line(good_events()[3])[:-1] + b',"deep":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ),
        "bad_json",
    ),
    "not-an-object": (_with("bad-not-an-object", lines=_lines_with(2, b"[1,2,3]")), "schema_error"),
    "empty-chunk": (_with("bad-empty-chunk", chunk_bytes={1: b""}), "bad_json"),
    # Schema
    "huge-int": (
        _with(
            "bad-huge-int", lines=_lines_with(1, _line(good_events()[1]).replace(b'"exit_code":1', b'"exit_code":' + b"9" * 40))
        ),
        "schema_error",
    ),
    "huge-float": (
        _with(
            "bad-huge-float", lines=_lines_with(1, _line(good_events()[1]).replace(b'"duration_s":0.4', b'"duration_s":1e400'))
        ),
        "schema_error",
    ),
    "ts-far-future": (_with("bad-ts-far-future", events=_replace(0, ts_client_s=9e12)), "schema_error"),
    "ts-negative": (_with("bad-ts-negative", events=_replace(0, ts_client_s=-5)), "schema_error"),
    "missing-field": (_with("bad-missing-field", events=_drop(3, "sha")), "schema_error"),
    "wrong-type": (_with("bad-wrong-type", events=_replace(1, exit_code="zero")), "schema_error"),
    "missing-type": (_with("bad-missing-type", events=_drop(0, "type")), "schema_error"),
    "note-kind": (_with("bad-note-kind", events=_replace(0, kind="musing")), "schema_error"),
    "stdout-and-ref": (_with("bad-stdout-and-ref", events=_replace(1, stdout_ref="sha256:" + "b" * 64)), "schema_error"),
    "unknown-type": (_with("bad-unknown-type", events=_replace(0, type="keystroke")), "unknown_event_type"),
    # Order and integrity
    "seq-gap": (_with("bad-seq-gap", events=_replace(3, seq=7)), "seq_gap"),
    "seq-duplicate": (_with("bad-seq-duplicate", events=_replace(3, seq=1)), "seq_duplicate"),
    "event-count": (_with("bad-event-count", complete={"event_count": 9}), "event_count_mismatch"),
    "duplicate-event-id": (_with("bad-duplicate-event-id", events=_replace(2, id="e0")), "duplicate_event_id"),
    "chain-changed-byte": (
        _with(
            "bad-chain-changed-byte",
            chunk_bytes={0: b"".join(_line(e) + b"\n" for e in good_events()[:2]).replace(b"off", b"0ff")},
        ),
        "chain_mismatch",
    ),
    "chain-wrong-head": (_with("bad-chain-wrong-head", complete={"chain_head": "0" * 64}), "chain_mismatch"),
    "chunk-conflict": (
        _with("bad-chunk-conflict", extra_objects={"chunks/000000-other.jsonl": _line(good_events()[0]) + b"\n"}),
        "chunk_conflict",
    ),
    "chunk-name": (_with("bad-chunk-name", extra_objects={"chunks/1-abc.jsonl": b"{}\n"}), "chunk_name"),
    "chunk-nested": (_with("bad-chunk-nested", extra_objects={"chunks/sub/000000-a.jsonl": b"{}\n"}), "chunk_name"),
    "chunk-beyond-count": (
        _with("bad-chunk-beyond-count", extra_objects={"chunks/000009-late.jsonl": _line(good_events()[0]) + b"\n"}),
        "manifest_mismatch",
    ),
    # Sizes and compression
    "ten-mb-line": (
        _with("bad-ten-mb-line", lines=_lines_with(1, _line(_event(1, stdout="y" * (10 * 2**20))))),
        "chunk_too_large",
    ),
    "two-mb-line": (_with("bad-two-mb-line", lines=_lines_with(1, _line(_event(1, stdout="y" * (2 * 2**20))))), "line_too_large"),
    "zip-bomb": (_with("bad-zip-bomb", gzip_chunks=True, chunk_bytes={0: _gz_bomb()}), "chunk_too_large"),
    "truncated-gzip": (
        _with(
            "bad-truncated-gzip",
            gzip_chunks=True,
            chunk_bytes={0: gzip.compress(b"".join(_line(e) + b"\n" for e in good_events()[:2]), mtime=0)[:-12]},
        ),
        "bad_gzip",
    ),
    "not-gzip": (_with("bad-not-gzip", gzip_chunks=True, chunk_bytes={1: b"plain text, not gzip"}), "bad_gzip"),
    "artifact-too-large": (
        _with("bad-artifact-too-large", artifacts={hashlib.sha256(BIG_OUTPUT.encode()).hexdigest(): BIG_OUTPUT.encode()}),
        "artifact_too_large",
    ),
    # Manifest and completion record
    "manifest-missing": (_with("bad-manifest-missing", omit=("manifest.json",)), "manifest_missing"),
    "manifest-bad-json": (_with("bad-manifest-bad-json", extra_objects={"manifest.json": b'{"trace_id": '}), "bad_json"),
    "manifest-consent-string": (
        _with(
            "bad-manifest-consent-string",
            manifest=manifest("bad-manifest-consent-string") | {"session": {"participant_id": "p", "consent": "yes"}},
        ),
        "schema_error",
    ),
    "manifest-other-id": (_with("bad-manifest-other-id", manifest=manifest("someone-else")), "manifest_mismatch"),
    "ended-before-start": (_with("bad-ended-before-start", complete={"ended_at": "2025-10-09T08:00:00Z"}), "manifest_mismatch"),
    "complete-bad-json": (_with("bad-complete-bad-json", extra_objects={"complete.json": b"{not json"}), "bad_json"),
    "complete-schema": (_with("bad-complete-schema", complete={"chunk_count": -1}), "schema_error"),
    "consent-false": (_with("bad-consent-false", manifest=manifest("bad-consent-false", consent=False)), "consent_withdrawn"),
    # Paths
    "absolute-file-path": (
        _with(
            "bad-absolute-file-path",
            events=[
                *good_events(3),
                {
                    "id": "e3",
                    "seq": 3,
                    "ts_client_s": T0 + 3,
                    "type": "file_edit",
                    "file_path": "/etc/passwd",
                    "diff_unified": "",
                    "buffer_hash_after": "a" * 64,
                },
            ],
        ),
        "unsafe_path",
    ),
    "dotdot-file-path": (
        _with(
            "bad-dotdot-file-path",
            events=[
                *good_events(3),
                {
                    "id": "e3",
                    "seq": 3,
                    "ts_client_s": T0 + 3,
                    "type": "file_edit",
                    "file_path": "src/../../x.py",
                    "diff_unified": "",
                    "buffer_hash_after": "a" * 64,
                },
            ],
        ),
        "unsafe_path",
    ),
    "file-path-segment-too-long": (
        _with("bad-file-path-segment-too-long", events=_edit_at(3, "src/" + "a" * 300 + ".py")),
        "unsafe_path",
    ),
    "file-path-too-deep": (_with("bad-file-path-too-deep", events=_edit_at(3, "d/" * 1000 + "x.py")), "unsafe_path"),
    "snapshot-file-then-folder": (
        _with("bad-snapshot-file-then-folder", snapshot=_tar([_member("pkg"), _member("pkg/mod.py")])),
        "bad_snapshot",
    ),
    "snapshot-too-deep": (_with("bad-snapshot-too-deep", snapshot=_tar([_member("d/" * 1000 + "x.py")])), "bad_snapshot"),
    "snapshot-name-too-long": (_with("bad-snapshot-name-too-long", snapshot=_tar([_member("n" * 300 + ".py")])), "bad_snapshot"),
    "snapshot-pax-header-bomb": (_with("bad-snapshot-pax-header-bomb", snapshot=_pax_bomb()), "bad_snapshot"),
    "unsafe-trace-id": (_unsafe_id("-leading-dash"), "unsafe_path"),
    "trace-id-with-space": (_unsafe_id("has space"), "unsafe_path"),
    # Artifacts and snapshot
    "stray-in-trace": (_with("bad-stray-in-trace", extra_objects={"notes.txt": b"hello"}), "stray_object"),
    "stray-at-root": (_stray_root, "stray_object"),
    "artifact-bad-name": (_with("bad-artifact-bad-name", extra_objects={"artifacts/not-a-hash": b"x"}), "stray_object"),
    "artifact-mismatch": (
        _with("bad-artifact-mismatch", artifacts={"c" * 64: b"these bytes do not hash to c*64"}),
        "artifact_mismatch",
    ),
    "artifact-missing": (
        _with("bad-artifact-missing", events=_replace(1, stdout=None, stdout_ref="sha256:" + "d" * 64)),
        "artifact_missing",
    ),
    "snapshot-missing": (
        _with(
            "bad-snapshot-missing",
            manifest=manifest("bad-snapshot-missing")
            | {"repo": {"origin": "o", "start_commit": "c", "snapshot": "sha256:" + "e" * 64}},
        ),
        "artifact_missing",
    ),
    "snapshot-absolute-path": (_with("bad-snapshot-absolute-path", snapshot=_tar([_member("/etc/cron.d/evil")])), "bad_snapshot"),
    "snapshot-dotdot": (_with("bad-snapshot-dotdot", snapshot=_tar([_member("../../evil.py")])), "bad_snapshot"),
    "snapshot-symlink-escape": (
        _with("bad-snapshot-symlink-escape", snapshot=_tar([_member("link", tarfile.SYMTYPE, linkname="/etc/passwd")])),
        "bad_snapshot",
    ),
    "snapshot-link-hidden-in-a-second-gzip-member": (
        _with(
            "bad-snapshot-link-hidden-in-a-second-gzip-member",
            snapshot=_two_members([_member("a.py")], [_member("link", tarfile.SYMTYPE, linkname="/etc/shadow")]),
        ),
        "bad_snapshot",
    ),
    "snapshot-link-out-through-another-link": (
        _with(
            "bad-snapshot-link-out-through-another-link",
            snapshot=_tar([_member("b", tarfile.SYMTYPE, linkname="."), _member("a", tarfile.SYMTYPE, linkname="b/..")]),
        ),
        "bad_snapshot",
    ),
    "snapshot-hardlink": (
        _with("bad-snapshot-hardlink", snapshot=_tar([_member("a.py"), _member("b.py", tarfile.LNKTYPE, linkname="a.py")])),
        "bad_snapshot",
    ),
    "snapshot-device": (_with("bad-snapshot-device", snapshot=_tar([_member("dev", tarfile.CHRTYPE)])), "bad_snapshot"),
    "snapshot-fifo": (_with("bad-snapshot-fifo", snapshot=_tar([_member("pipe", tarfile.FIFOTYPE)])), "bad_snapshot"),
    "snapshot-not-tar": (_with("bad-snapshot-not-tar", snapshot=b"definitely not a tarball"), "bad_snapshot"),
    # Completeness and table-level rules
    "incomplete-after-grace": (_with("bad-incomplete-after-grace", omit=("chunks/000001-c1.jsonl",)), "incomplete"),
    "events-before-session": (
        _with("bad-events-before-session", events=_replace(0, ts_client_s=T0 - 7200)),
        "expectation_failed",
    ),
    "session-too-long": (_with("bad-session-too-long", complete={"ended_at": "2025-10-20T09:00:00Z"}), "expectation_failed"),
    # Secrets in names (stored as they are, so refused) and where redaction cannot read
    "secret-in-file-path": (_with("bad-secret-in-file-path", events=_edit_at(3, f"config/{TOKEN}.py")), "secret_in_name"),
    "secret-in-event-id": (_with("bad-secret-in-event-id", events=_replace(0, id=TOKEN)), "secret_in_name"),
    "secret-in-framework": (_with("bad-secret-in-framework", events=_replace(2, framework=TOKEN)), "secret_in_name"),
    "secret-in-field-name": (_with("bad-secret-in-field-name", events=_replace(0, **{TOKEN: 1})), "secret_in_name"),
    "secret-in-nested-field-name": (
        _with("bad-secret-in-nested-field-name", events=_replace(0, editor={"settings": {TOKEN: True}})),
        "secret_in_name",
    ),
    "secret-in-task-id": (
        _with("bad-secret-in-task-id", manifest=_manifest_with("bad-secret-in-task-id", ("task", "id"), TOKEN)),
        "secret_in_name",
    ),
    "secret-in-client-name": (
        _with("bad-secret-in-client-name", manifest=_manifest_with("bad-secret-in-client-name", ("client", "name"), TOKEN)),
        "secret_in_name",
    ),
    "secret-in-manifest-field-name": (
        _with("bad-secret-in-manifest-field-name", manifest=_manifest_with("bad-secret-in-manifest-field-name", (TOKEN,), 1)),
        "secret_in_name",
    ),
    "secret-in-chunk-name": (_chunk_renamed("bad-secret-in-chunk-name", TOKEN), "secret_in_name"),
    "secret-as-trace-id": (_unsafe_id(TOKEN), "secret_in_name"),
    "gzip-output-cut": (
        _gzip_output("bad-gzip-output-cut", gzip.compress(f"export GH={TOKEN}\n".encode() * 50, mtime=0)[:-8]),
        "unreadable_artifact",
    ),
    "trace-too-large": (
        _with(
            "bad-trace-too-large",
            events=[
                {"id": f"e{i}", "seq": i, "ts_client_s": T0 + i, "type": "rationale_note", "kind": "plan", "text": "x" * 900_000}
                for i in range(8)
            ],
            chunk_size=4,
            gzip_chunks=True,
        ),
        "trace_too_large",
    ),
    "repeated-key": (_with("bad-repeated-key", lines=_lines_with(0, _line_with_repeat(0, "text", TOKEN))), "bad_json"),
    "manifest-repeated-key": (_manifest_repeat("bad-manifest-repeated-key"), "bad_json"),
    "lone-surrogate": (_with("bad-lone-surrogate", events=_replace(0, text="half a pair: \ud800")), "bad_json"),
    "number-too-large-in-unknown-field": (
        _with(
            "bad-number-too-large-in-unknown-field", lines=_lines_with(0, _line(good_events()[0])[:-1] + b',"confidence":1e400}')
        ),
        "schema_error",
    ),
}


def _outside(inbox: str, name: str) -> str:
    """A real trace folder next to the inbox (what a link in the inbox could point at)."""
    target = f"{inbox.rstrip('/')}-outside/{name}"
    for k, v in RawTrace(name).build().items():
        os.makedirs(os.path.dirname(os.path.join(target, k)), exist_ok=True)
        with open(os.path.join(target, k), "wb") as f:
            f.write(v)
    return target


def _symlinked_chunks_folder(inbox: str) -> None:
    RawTrace("bad-symlink-chunks-folder").write(inbox)
    chunks = os.path.join(inbox, "bad-symlink-chunks-folder", "chunks")
    shutil.rmtree(chunks)
    os.symlink(os.path.join(_outside(inbox, "bad-symlink-chunks-folder"), "chunks"), chunks)


def _symlinked_trace_folder(inbox: str) -> None:
    os.makedirs(inbox, exist_ok=True)
    os.symlink(_outside(inbox, "bad-symlink-trace-folder"), os.path.join(inbox, "bad-symlink-trace-folder"))


LOCAL_ONLY = {
    "symlink-artifact": (_symlinked_artifact, "unsafe_path"),
    "symlink-chunks-folder": (_symlinked_chunks_folder, "unsafe_path"),
    "symlink-trace-folder": (_symlinked_trace_folder, "unsafe_path"),
}
"""Cases that need a local folder (S3 has no symlinks)."""

S3_ONLY = {"dotdot-artifact-key": (_with("bad-dotdot-artifact-key", extra_objects={"artifacts/../escape": b"x"}), "unsafe_path")}
"""Cases that need an object store (a local path with '..' is resolved before it is written)."""
