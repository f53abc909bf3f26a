"""Secret redaction before anything reaches the lake.

Two layers: precise rules for the common token formats (AWS keys, GitHub, OpenAI, Slack and
GitLab tokens, private-key blocks, JWTs, passwords in URLs, ...), then the detectors of
detect-secrets (a maintained catalogue of ~25 credential formats and a keyword heuristic) on
what is left. Both only run where a cheap prefilter matches: the prefilter is a single
Rust-regex-compatible pattern that polars evaluates column-wise over a whole batch, and a test
proves it matches every line that either layer would redact.

A secret is replaced by `[REDACTED:<rule>]`; callers record `field:rule` per event, never the secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import polars as pl

__all__ = [
    "MARKER",
    "PREFILTER",
    "RULES",
    "JsonPairs",
    "Rule",
    "dump_pairs",
    "load_pairs",
    "redact_bytes",
    "redact_columns",
    "redact_json_text",
    "redact_json_value",
    "redact_pairs",
    "redact_text",
    "redaction_records",
    "secret_rule",
    "secrets_in_names",
]


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    group: int = 0
    """Which group is the secret (0: the whole match)."""


def _rule(name: str, pattern: str, group: int = 0, flags: int = 0) -> Rule:
    return Rule(name, re.compile(pattern, flags), group)


_SECRET_NAME = r"(?:token|secret|passw(?:or)?d|pwd|api_?key|access_?key|auth_?key|credentials?)"
_VALUE_CHARS = r"[A-Za-z0-9_\-+/=.~]"
_SNAKE = r"(?-i:(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*|[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"
"""A name in code (snake_case, UPPER_CASE, a dotted path), which a secret-looking value is not."""

RULES: tuple[Rule, ...] = (
    _rule(
        "private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        flags=re.S,
    ),
    _rule("aws_access_key_id", r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    _rule(
        "aws_secret_access_key",
        r"(?i)aws.{0,20}?(?:secret|key|pwd|pw|password|pass|token).{0,20}?[\s\"'=:]([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        1,
    ),
    _rule("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9_]{30,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    _rule("gitlab_token", r"\b(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent)-[A-Za-z0-9_-]{20,1024}"),
    _rule("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    _rule("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    _rule("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]+"),
    _rule("stripe_key", r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    _rule("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_.+/=-]*"),
    _rule("url_password", r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^/\s:@]++:([^/\s@]+)@", 1),
    # A value assigned to a name that says it is secret (`export API_TOKEN="..."`, `"db_password": "..."`):
    # 12 or more token characters with a letter and a digit, quoted or standing alone, and not a
    # snake_case name (so `token = os.environ["T"]`, `token = get_token()`, `token = user_token_2`
    # stay as they are: a false positive in a diff would stop its replay). Every part is bounded or
    # possessive, and a name starts only where a word does: Python's `re` backtracks, and this rule
    # once took 37 s on 3 KB of "token" repeated (tests/tasks/ingest/test_redact.py repeats it).
    _rule(
        "assigned_secret",
        rf"(?i)(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*?{_SECRET_NAME})[A-Za-z0-9_-]*+[\"']?\s*+[:=]\s*+([\"']?)"
        rf"(?!{_SNAKE}(?!{_VALUE_CHARS}))"
        rf"((?={_VALUE_CHARS}{{0,255}}\d)(?={_VALUE_CHARS}{{0,255}}[A-Za-z]){_VALUE_CHARS}{{12,}})\1(?![A-Za-z0-9_(\[])",
        2,
    ),
)

# Every rule above and every detect-secrets detector needs one of these fragments to match, so a
# text without any of them needs no further look. Kept to the syntax shared by Python's `re` and
# Rust's `regex` (no look-around), so polars can evaluate it column-wise. Keywords count only when
# an assignment-like character follows on the same line (or a comparison precedes them), as in
# every keyword pattern of detect-secrets. tests/tasks/ingest/test_redact.py proves the superset property
# against samples of both layers.
_KEYWORD = r"(key|pass|pwd|pw|secret|token|credential|contrase)"
PREFILTER = (
    r"(?i:-----begin|-----end|aws|a3t[a-z0-9]|akia|asia|abia|acca|gh[pousr]_|github_pat_|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent)-"
    r"|gr1348941|sk-|xox[abposr]-|hooks\.slack|[rs]k_(?:live|test)_|eyj|://[^/\s]*@|accountkey=|akc[a-z0-9]|ap[0-9a-f][a-z0-9]{8}"
    r"|sg\.|sq0csp-|pypi-|_authtoken|-us[0-9]|[mno][a-z0-9_-]{23,25}\.|[0-9]{8,10}:[a-z0-9_-]{35}|ac[a-z0-9]{32}|sk[a-z0-9]{32}"
    rf"|{_KEYWORD}[^\n]*[=:(;>]|{_KEYWORD}[\s\"'\]]+[a-z0-9_/+-]{{24,}}|[=!]=[^\n]*{_KEYWORD})"
)
_PREFILTER_RE = re.compile(PREFILTER)
_KEY_END = re.compile(r"(?m)^-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]{16,}\r?")


def _may_hold_secrets(texts: list[str]) -> list[bool]:
    """PREFILTER on each text. Python's `re` backtracks on it (0.4 s for 1 MB of prose, worse on
    "==" repeated); long texts go to polars' regex engine, which runs in linear time."""
    if sum(map(len, texts)) <= 4096:
        return [bool(_PREFILTER_RE.search(t)) for t in texts]
    return pl.Series(texts, dtype=pl.String).str.contains(PREFILTER).to_list()


def _redact_key_tails(text: str, hits: list[str]) -> str:
    """The end of a private key whose beginning was in another field or event (a key pasted across
    two notes): the whole base64 lines just before an END line, and the END line. Walked back
    from each END line (a regex trying every line start backtracks quadratically)."""
    if "-----END" not in text:
        return text
    out, pos = [], 0
    for m in _KEY_END.finditer(text):
        start = m.start()
        while start > pos:
            line_start = max(text.rfind("\n", pos, start - 1) + 1, pos)
            if not _KEY_LINE.fullmatch(text, line_start, start - 1):
                break
            start = line_start
        if start < m.start():
            out += [text[pos:start], _mark("private_key")]
            hits.append("private_key")
            pos = m.end()
    return "".join(out) + text[pos:] if out else text


_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-+/=.~]*")


def _mark(rule: str) -> str:
    return f"[REDACTED:{rule}]"


@cache
def _detectors() -> tuple:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    # Entropy detectors flag every hash and test fixture in a diff (and would break replay);
    # public IP addresses are not secrets.
    skip = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
    return tuple(cls() for cls in get_mapping_from_secret_type_to_class().values() if cls.__name__ not in skip)


def _detector_rule(plugin) -> str:
    return "ds_" + re.sub(r"(?<!^)(?=[A-Z])", "_", type(plugin).__name__.removesuffix("Detector")).lower()


def _expand(line: str, start: int, end: int) -> tuple[int, int]:
    """Grow a reported secret to the whole token around it: detectors sometimes report a prefix."""
    while start > 0 and _TOKEN_CHARS.fullmatch(line[start - 1]) and line[start - 1] not in "=":
        start -= 1
    m = _TOKEN_CHARS.match(line, end)
    return start, m.end() if m else end


_WINDOW, _STEP, _LONG_RUN = 1024, 768, re.compile(r"[\w-]{257,}")


def _detector_views(line: str) -> list[str]:
    """What the detectors read of a line: the line itself when short; else windows of 1,024
    characters (overlapping by 256) of the line with every run of 257+ word characters cut after
    256. detect-secrets' patterns backtrack quadratically in both the line's length and such runs
    ("password" repeated 375 times took 1.1 s); a secret they find is looked up, and grown to its
    whole token, in the line itself."""
    if len(line) <= _WINDOW and not _LONG_RUN.search(line):
        return [line]
    cut = _LONG_RUN.sub(lambda m: m.group()[:256] + "\n", line)
    return [cut[i : i + _WINDOW] for i in range(0, max(len(cut) - _WINDOW + _STEP, 1), _STEP)]


def _redact_detected(text: str, hits: list[str]) -> str:
    lines = text.split("\n")
    for i, (line, maybe) in enumerate(zip(lines, _may_hold_secrets(lines), strict=True)):
        if not maybe:
            continue
        views = _detector_views(line)
        found = {
            (_detector_rule(plugin), secret.secret_value)
            for view, view_maybe in zip(views, _may_hold_secrets(views), strict=True)
            if view_maybe
            for plugin in _detectors()
            for secret in plugin.analyze_line(filename="trace", line=view, line_number=i + 1)
        }
        for rule, value in sorted(found, key=lambda f: (-len(f[1] or ""), f[0])):
            if not value or value.startswith("[REDACTED"):
                continue
            pos = line.find(value)
            while pos >= 0:
                start, end = _expand(line, pos, pos + len(value))
                line = line[:start] + _mark(rule) + line[end:]
                hits.append(rule)
                pos = line.find(value, start + len(_mark(rule)))
        lines[i] = line
    return "\n".join(lines)


def redact_text(text: str) -> tuple[str, list[str]]:
    """`text` with secrets replaced, and the names of the rules that fired (one per secret)."""
    if not text or not _may_hold_secrets([text])[0]:
        return text, []
    hits: list[str] = []
    for rule in RULES:

        def _sub(m: re.Match[str], rule: Rule = rule) -> str:
            hits.append(rule.name)
            if rule.group == 0:
                return _mark(rule.name)
            s, e = m.span(rule.group)
            return m.string[m.start() : s] + _mark(rule.name) + m.string[e : m.end()]

        text = rule.pattern.sub(_sub, text)
    text = _redact_key_tails(text, hits)
    text = _redact_detected(text, hits)
    return text, hits


def redact_bytes(data: bytes) -> bytes:
    """`data` with secrets redacted in its text; bytes that are not UTF-8 stay as they are around them."""
    new, hits = redact_text(data.decode("utf-8", "surrogateescape"))
    return new.encode("utf-8", "surrogateescape") if hits else data


def redact_json_value(value):
    """(value, rules) with every string inside a decoded JSON value redacted, object keys included."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        pairs = [redact_json_value(v) for v in value]
        return [p[0] for p in pairs], [h for p in pairs for h in p[1]]
    if isinstance(value, dict):
        hits: list[str] = []
        out = {}
        for k, v in value.items():
            new_k, hk = redact_text(k)
            new_v, hv = redact_json_value(v)
            out[new_k] = new_v
            hits += hk + hv
        return out, hits
    return value, []


class JsonPairs(list):
    """A JSON object as the (key, value) pairs it was written with: in order, repeated keys kept."""


class _Number(str):
    """A JSON number (or NaN/Infinity) exactly as written."""


def load_pairs(text: str | bytes):
    """JSON text decoded with every object as JsonPairs and every number as written: `dump_pairs`
    gives the same document back, repeated keys and all."""
    return json.loads(text, object_pairs_hook=JsonPairs, parse_float=_Number, parse_int=_Number, parse_constant=_Number)


def dump_pairs(value) -> str:
    if isinstance(value, JsonPairs):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dump_pairs(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_pairs(v) for v in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)
    return json.dumps(value, ensure_ascii=False)


def redact_pairs(value, hits: list[str]):
    """`value` (from `load_pairs`) with secrets redacted in every string and key; rules go to `hits`."""
    if isinstance(value, _Number):
        return value
    if isinstance(value, str):
        new, h = redact_text(value)
        hits += h
        return new
    if isinstance(value, JsonPairs):
        return JsonPairs((redact_pairs(k, hits), redact_pairs(v, hits)) for k, v in value)
    if isinstance(value, list):
        return [redact_pairs(v, hits) for v in value]
    return value


def redact_json_text(text: str) -> tuple[str, list[str]]:
    """JSON text with secrets redacted in every string, key and copy of a repeated key (which a
    parser keeping one value would hide), escapes decoded first; other text is redacted as text."""
    try:
        value = load_pairs(text)
    except (ValueError, RecursionError):
        return redact_text(text)
    hits: list[str] = []
    new = redact_pairs(value, hits)
    return (dump_pairs(new), hits) if hits else (text, [])


def redact_columns(df: pl.DataFrame, columns: Iterable[str], *, list_columns: Iterable[str] = ()) -> pl.DataFrame:
    """`df` with secrets redacted in its string columns (and list-of-string columns).

    Only cells that match the prefilter are touched in Python; the rest stays columnar.
    What was redacted is read back from the markers by `redaction_records`.
    """
    updates: list[pl.Series] = []
    for col in columns:
        if col not in df.columns:
            continue
        mask = df.get_column(col).str.contains(PREFILTER).fill_null(False)
        if not mask.any():
            continue
        values = df.get_column(col).to_list()
        for i in mask.arg_true().to_list():
            values[i] = redact_text(values[i])[0]
        updates.append(pl.Series(col, values, dtype=pl.String))
    for col in list_columns:
        if col not in df.columns:
            continue
        mask = df.get_column(col).list.join("\n").fill_null("").str.contains(PREFILTER)
        if not mask.any():
            continue
        values = df.get_column(col).to_list()
        for i in mask.arg_true().to_list():
            values[i] = [redact_text(item)[0] for item in values[i]]
        updates.append(pl.Series(col, values, dtype=pl.List(pl.String)))
    return df.with_columns(updates) if updates else df


def secret_rule(name: str) -> str | None:
    """The rule a secret in `name` (a path, an id, a field's name) fires, or None."""
    hits = redact_text(name)[1]
    return hits[0] if hits else None


def _json_keys(value) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _json_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_keys(v)


def secrets_in_names(
    df: pl.DataFrame, columns: Iterable[str], *, list_columns: Iterable[str] = (), json_columns: Iterable[str] = ()
) -> dict[int, tuple[str, str]]:
    """Row index -> (column, rule) for rows where a name holds what looks like a secret: a string
    column, an item of a list column, or an object key inside a JSON column. Names are stored as
    they are (a redacted path or id would point at nothing), so such a row cannot be kept."""
    found: dict[int, tuple[str, str]] = {}

    def check(col: str, candidates: pl.Series, values: Callable[[object], Iterable[str]]) -> None:
        mask = candidates.str.contains(PREFILTER).fill_null(False)
        if not mask.any():
            return
        cells = df.get_column(col)
        for i in mask.arg_true().to_list():
            for value in values(cells[i]):
                rule = secret_rule(value)
                if rule and i not in found:
                    found[i] = (col, rule)

    for col in columns:
        if col in df.columns:
            check(col, df.get_column(col), lambda v: [v])
    for col in list_columns:
        if col in df.columns:
            check(col, df.get_column(col).list.join("\n"), lambda v: list(v))
    for col in json_columns:
        if col in df.columns:
            check(col, df.get_column(col), lambda v: _json_keys(json.loads(v)))
    return found


MARKER = r"\[REDACTED:([A-Za-z0-9_]+)\]"


def redaction_records(df: pl.DataFrame, columns: Iterable[str]) -> pl.Series:
    """Per row, `column:rule` for every redaction marker in `columns` (null when there is none).

    Read from the stored values themselves, so the record is right whether the redaction happened
    in this pass or an earlier one (a trace re-admitted from the redacted quarantine copy).
    """
    texts = {}
    for col in columns:
        if col in df.columns:
            expr = pl.col(col)
            texts[col] = (expr.list.join("\n") if df.schema[col] == pl.List(pl.String) else expr).fill_null("")
    none = pl.Series("redactions", [None] * df.height, dtype=pl.List(pl.String))
    if not texts:
        return none
    # Most rows carry no marker: find those that do with a plain substring search first.
    marked = df.select(pl.any_horizontal(e.str.contains("[REDACTED:", literal=True) for e in texts.values())).to_series()
    if not marked.any():
        return none
    parts = [
        e.str.extract_all(MARKER).list.eval(pl.lit(f"{c}:") + pl.element().str.slice(10).str.strip_suffix("]"))
        for c, e in texts.items()
    ]
    records = pl.concat_list(parts)
    found = (
        df.select(list(texts)).with_row_index("_row").filter(marked)
        .select("_row", redactions=pl.when(records.list.len() > 0).then(records))
    )  # fmt: skip
    rows = pl.DataFrame({"_row": pl.int_range(df.height, dtype=pl.UInt32, eager=True)})
    return rows.join(found, on="_row", how="left", maintain_order="left").get_column("redactions")
