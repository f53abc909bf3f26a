"""The hash chain, checked against vectors computed independently (coreutils sha256sum, no shared code)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from schemas.chain import chain_head, chain_head_from_digests, chain_start, line_digest

LINES = [
    b'{"id":"e0","seq":0,"ts_client_s":1760000000.0,"type":"rationale_note","kind":"plan","text":"fix it"}',
    b'{"id":"e1","seq":1,"ts_client_s":1760000001.5,"type":"commit","sha":"abcdef1","message":"fix \\u00e9"}',
    '{"id":"e2","seq":2,"ts_client_s":1760000002.0,"type":"rationale_note","kind":"decision","text":"caf\u00e9"}'.encode(),
]


def _sha256sum(data: bytes) -> bytes:
    """sha256 by the coreutils binary: an implementation that shares nothing with ours."""
    out = subprocess.run(["sha256sum", "-"], input=data, capture_output=True, check=True).stdout
    return bytes.fromhex(out.split()[0].decode())


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="coreutils sha256sum not installed")
@pytest.mark.parametrize("n", [pytest.param(0, id="empty"), pytest.param(1, id="one"), pytest.param(3, id="three")])
def test_chain_matches_coreutils(n):
    trace_id = "t-42"
    h = _sha256sum(b"prt-chain-v1\n" + trace_id.encode())
    for line in LINES[:n]:
        h = _sha256sum(h + _sha256sum(line))
    assert chain_head(trace_id, LINES[:n]) == h.hex()


def test_chain_literal_vectors():
    # Frozen values (the first is `printf 'prt-chain-v1\nt-42' | sha256sum`): a change to the
    # chain would break every client in every language.
    assert chain_start("t-42").hex() == "7dc212848aabda7a00d016e742ee76620acfebc8fcd0b9f9f6c8c615d8178f09"
    assert chain_head("t-42", []) == "7dc212848aabda7a00d016e742ee76620acfebc8fcd0b9f9f6c8c615d8178f09"
    assert chain_head("t-42", LINES) == "500265f0d7d4d385f15ebb570c7441c5cf8c26217da8ae58b5315d57658cf204"


def test_digests_and_lines_agree():
    assert chain_head_from_digests("x", [line_digest(line) for line in LINES]) == chain_head("x", LINES)


def test_any_changed_byte_changes_the_head():
    base = chain_head("t", LINES)
    assert chain_head("t", [LINES[0], LINES[1] + b" ", LINES[2]]) != base
    assert chain_head("t", [LINES[1], LINES[0], LINES[2]]) != base  # order matters
    assert chain_head("u", LINES) != base  # bound to the trace id
