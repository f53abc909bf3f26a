"""Redaction: every common token format, in every field, never reaches any file under the lake."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import polars as pl
import pytest
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

from client.writer import TraceWriter
from flows.ingest import ingest_inbox
from lake import Lake
from tasks.ingest.redact import _PREFILTER_RE, redact_text
from tests.support.corpus import CASES, TOKEN, RawTrace, good_events
from tests.support.tracegen import SNAPSHOT, T0, lake_text, manifest, objects, put

SECRETS = {
    "aws_access_key_id": "AKIAZ7QXJ3KV5RTY2WMP",
    "aws_secret_access_key": "aws_secret_access_key = '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'",
    "github_token": "ghp_Zx8Kq2Lm5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5A",
    "github_pat": "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY",
    "openai_key": "sk-proj-Q2w4E6r8T0y1U3i5O7p9A2s4D6f8G0h1J3k5L7z9X1c3",
    "slack_token": "xoxb-2314567890-9876543210123-Qm3Zx8Kp2Lw5Nv7Bc1Df4Gh6",
    "slack_webhook": "https://hooks.slack.com/services/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",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAzx8Kq2Lm5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5A\nQm3Zx8Kp2Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5AaBcDeFgHiJkLmN\n-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZS1zZWNyZXQiLCJpYXQiOjE3MDAwMDAwMDB9.Qm3Zx8Kp2Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5Ab",
    "url_password": "postgres://admin:Hunter2Passw0rdXyz@db.internal:5432/app",
    "keyword_password": 'password = "CorrectHorseBattery9"',
    "stripe_key": "sk_live_Zx8Kq2Lm5Nv7Bc1Df4Gh6Jk9",
    "gitlab_token": "glpat-Zx8Kq2Lm5Nv7Bc1Df4Gh6",
    "stripe_test_key": "sk_test_Qm3Zx8Kp2Lw5Nv7Bc1Df4Gh6",
    "slack_workflow_webhook": "https://hooks.slack.com/workflows/T0123ABCD/A0456EFGH/123456789012345678/Pq3Rs0Tu2Wy5AaBcDe",
    "export_token": 'export API_TOKEN="Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0"',
}
# The part of each sample that must never be stored (the whole sample, or its secret value).
NEEDLES = {
    **{k: v for k, v in SECRETS.items()},
    "aws_secret_access_key": "qT7v0Ns2RzWc9Lp4Hx8Bk1Dm6Fy3Ga5Je7Uo0Ir2",
    "private_key": "MIIEpAIBAAKCAQEAzx8Kq2Lm5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5A",
    "url_password": "Hunter2Passw0rdXyz",
    "keyword_password": "CorrectHorseBattery9",
    "jwt": "eyJzdWIiOiJhbGljZS1zZWNyZXQiLCJpYXQiOjE3MDAwMDAwMDB9",
    "slack_webhook": "Zx8Kq2Lm5Nv7Bc1Df4Gh6Jk9",
    "slack_workflow_webhook": "Pq3Rs0Tu2Wy5AaBcDe",
    "export_token": "Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0",
}


@pytest.mark.parametrize("name", list(SECRETS))
def test_each_format_is_redacted(name):
    text = f"before {SECRETS[name]} after"
    redacted, rules = redact_text(text)
    assert NEEDLES[name] not in redacted and rules and redacted.startswith("before ")
    assert all(NEEDLES[name] not in r for r in rules)


def test_ordinary_text_is_left_alone():
    for text in (
        "for key, value in mapping.items():",
        "def tokens(): pass",
        "secret sauce recipe",
        "the password field is empty",
        "sha256 e3b0c44298fc1c149afbf4c8996fb924",
    ):
        assert redact_text(text) == (text, [])


@pytest.mark.parametrize("name", list(SECRETS))
def test_a_secret_in_a_long_line_is_found_wherever_it_sits(name):
    """Long lines are read in overlapping windows (see _detector_views): a secret on a window's
    edge, or after a run of word characters longer than the runs the detectors read, still goes."""
    secret = SECRETS[name].replace("\n", " ") if name != "private_key" else SECRETS[name]
    for offset in (767, 1000, 1024, 1536, 5000):
        prose = ("the mean is off by one " * 400)[:offset] + "z" * 300 + " "
        redacted, _ = redact_text(prose + secret + " " + prose)
        assert NEEDLES[name] not in redacted, offset


# What made Python's backtracking `re` take seconds per kilobyte (3 KB of "token" took 37 s in
# assigned_secret; "eyJ-" in jwt, base64 lines in the key-tail rule, "password" in detect-secrets):
# each is 200 KB here, after which a keyword makes every rule run.
ADVERSARIAL = [
    "token",
    "tokena",
    "token=",
    "a.token=",
    "api_key=",
    "password",
    "eyJ-",
    "a.",
    "==",
    "sk-",
    "A" * 17 + "\n",
    "pwd=`",
]


@pytest.mark.timeout(60)  # a hang guard: these ran for hours before; each takes well under a second now
@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_redaction_does_not_backtrack_on_repetitions(unit):
    text = unit * (200_000 // len(unit)) + " token=Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0"
    assert "Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0" not in redact_text(text)[0]


SAMPLES = [
    "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a" * 36, "xoxb-1234567890-123456789-abcdef", "https://user:pa55word@example.org",
    "-----BEGIN OPENSSH PRIVATE KEY-----", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "sk-abcdefghij1234567890T3BlbkFJabcdefghij1234567890",
    "AccountKey=" + "a" * 88, "glpat-" + "a" * 20, "sk_live_" + "a" * 24, "SG." + "a" * 22 + "." + "b" * 43,
    "NzkyNzE1NDU0MTk2MDg4ODQy.X-hvzA.Ovy4MCQywSkoMRRclStW4xAYK7I", "123456789:" + "A" * 35, "AC" + "a" * 32, "SK" + "b" * 32,
    "a" * 32 + "-us12", "api_key = 'abcdefgh12345'", "secret: 'qwertyuiop'", "passwd = 'letmein123'", "sq0csp-" + "a" * 43,
    "AKC" + "a" * 12, "pypi-AgEIcHlwaS5vcmc" + "a" * 70, "//registry.npmjs.org/:_authToken=npm_" + "a" * 36,
]  # fmt: skip


@pytest.mark.parametrize("line", SAMPLES)
def test_prefilter_lets_every_detectable_secret_through(line):
    """The cheap prefilter must match every line that a detect-secrets plugin or a rule would flag."""
    plugins = [
        cls()
        for cls in get_mapping_from_secret_type_to_class().values()
        if "Entropy" not in cls.__name__ and cls.__name__ != "IPPublicDetector"
    ]
    flagged = any(list(p.analyze_line(filename="x", line=line, line_number=1)) for p in plugins) or redact_text(line)[1]
    assert flagged, f"sample {line!r} is not a secret for any detector; fix the sample"
    assert _PREFILTER_RE.search(line)


PEM_BODY = "MIIEowIBAAKCAQEAsplit7Kq2Lm5Nv7Bc1Df4Gh6Jk9Pq3Rs0Tu2Wy5A"


def _planted_trace(inbox: str, trace_id: str) -> None:
    everything = "\n".join(SECRETS.values())
    clock = iter(T0 + i for i in range(100))
    m = manifest(trace_id, task={"id": "T-9", "title": f"leak {SECRETS['github_token']}", "description": everything})
    m["repo"] = {"origin": SECRETS["url_password"], "start_commit": "abc"}
    m["qa"] = {"test_command": f"GH_TOKEN={SECRETS['github_token']} python -m pytest -q", "timeout_s": 60}
    with TraceWriter(inbox, m, snapshot=SNAPSHOT, inline_output_bytes=8192, clock=lambda: next(clock)) as w:
        w.note("observation", f"found these: {everything}")
        # A private key pasted across two notes: the second half has no BEGIN line of its own.
        w.note("observation", f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY[:20]}")
        w.note("observation", f"{PEM_BODY[20:]}\nQm3Zx8Kp2Lw5Nv7Bc1Df4Gh6Jk9Pq3Rs0\n-----END RSA PRIVATE KEY-----")
        w.cmd_run(
            f"deploy --token {SECRETS['github_token']} --db {SECRETS['url_password']}",
            exit_code=0,
            duration_s=0.1,
            stdout=everything,
            stderr=everything,
        )
        w.cmd_run("cat big.log", exit_code=0, duration_s=0.1, stdout=(everything + "\n") * 50)  # an output artifact
        # An output the client stored gzip-compressed, and one that is not UTF-8 around its secret.
        gz = w.artifact(gzip.compress((everything + "\n").encode() * 20, mtime=0))
        latin = w.artifact(b"caf\xe9 " + SECRETS["github_token"].encode() + b" \xff\xfe")
        w._emit("cmd_run", {}, command="zcat", exit_code=0, duration_s=0.1, stdout_ref=gz, stderr_ref=latin)
        w.edit_file("settings.py", None, f"API_KEY = '{SECRETS['openai_key']}'\n{SECRETS['keyword_password']}\n")
        w.test_run(
            "pytest", "pytest", passed=1, failed=1, failing_tests=[f"tests/test_x.py::test_token[{SECRETS['slack_token']}]"]
        )
        w.commit(
            "abcdef1",
            f"remove {SECRETS['aws_access_key_id']} from config",
            env_dump=everything,
            nested={"deep": [SECRETS["jwt"]]},
        )


REFUSED = [
    name for name in CASES if name.startswith("secret-") or name in ("repeated-key", "manifest-repeated-key", "gzip-output-cut")
]
"""Corpus cases where a secret sits where it cannot be redacted: each is refused, and its quarantine copy redacted."""


def _cut_gzip_chunk(inbox: str) -> None:
    """A gzip chunk without its trailer: unreadable as a whole, readable as far as it goes."""
    lines = [json.dumps({**e, "text": f"{e.get('text', '')} {SECRETS['github_token']}"}).encode() for e in good_events()]
    RawTrace(
        "t-cut-gzip", lines=lines, gzip_chunks=True, chunk_bytes={0: gzip.compress(b"\n".join(lines[:2]) + b"\n")[:-8]}
    ).write(inbox)


def test_secrets_planted_everywhere_are_found_nowhere(storage_url, prefect_api):
    inbox, lake = storage_url("inbox"), storage_url("lake")
    _planted_trace(inbox, "t-leaky")
    _planted_trace(inbox, "t-leaky-bad")
    key_complete = "t-leaky-bad/complete.json"
    put(
        inbox, key_complete, objects(inbox)[key_complete].replace(b'"chain_head": "', b'"chain_head": "0')
    )  # quarantined, with its secrets
    for name in REFUSED:
        CASES[name][0](inbox)
    _cut_gzip_chunk(inbox)
    summary = ingest_inbox(inbox=inbox, lake=lake)
    assert summary.ingested == ["t-leaky"]
    reasons = Counter(r for _, r, _ in summary.quarantined)
    assert reasons == Counter({"schema_error": 1, "bad_gzip": 1, **Counter(CASES[n][1] for n in REFUSED)})

    text = lake_text(lake) + json.dumps(_prefect_artifacts(prefect_api))
    needles = {**NEEDLES, "pem_second_half": PEM_BODY[20:], "name_token": TOKEN}
    leaked = [name for name, needle in needles.items() if needle in text]
    assert leaked == [], f"secrets found under the lake or in Prefect: {leaked}"

    lk = Lake(lake)
    records = (
        lk.events()
        .filter(pl.col("trace_id") == "t-leaky")
        .select(pl.col("redactions").explode())
        .drop_nulls()
        .collect()["redactions"]
        .to_list()
    )
    fields = {r.split(":")[0] for r in records}
    assert {"text", "command", "stdout", "stderr", "diff_unified", "failing_tests", "message", "extra"} <= fields
    assert all(needle not in r for r in records for needle in NEEDLES.values())
    trace = lk.traces().filter(pl.col("trace_id") == "t-leaky").collect().row(0, named=True)
    assert (
        trace["redaction_count"] >= len(records)
        and "[REDACTED:" in trace["task_description"]
        and "[REDACTED:url_password]" in trace["repo_origin"]
        and "[REDACTED:github_token]" in trace["test_command"]
    )
    # The gzip output is stored decompressed and redacted, under the name of what is stored.
    zcat = lk.events().filter(pl.col("trace_id").eq("t-leaky") & pl.col("command").eq("zcat")).collect().row(0, named=True)
    stored = objects(lake)[f"artifacts/{zcat['stdout_ref'].removeprefix('sha256:')}"]
    assert stored.startswith(b"[REDACTED:") and stored.count(b"[REDACTED:jwt]") == 20


def _prefect_artifacts(api: str) -> list[dict]:
    """Every artifact the runs published (tables and summaries): they live in Prefect's database."""
    import httpx

    return httpx.post(f"{api}/artifacts/filter", json={"limit": 200}).json()
