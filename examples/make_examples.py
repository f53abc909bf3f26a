"""Regenerate the three example sessions in examples/traces/ with the producer SDK.

    python examples/make_examples.py [OUT_DIR]

Each session works on a small real repo under examples/repos/ (the start commit), shipped as the
trace's snapshot artifact. Edits are written as exact replacements on the current file text, so
every diff applies in order and every buffer_hash_after is the true hash. Timestamps, ids and
gzip headers are fixed: running this twice gives byte-identical folders (a test checks it).

- example-simple-fix: one-line fix of mean() in calculator; direct, little rationale.
- example-multi-file-fix: inventory's discounted cart total; a wrong rounding hypothesis first,
  then the double discount found and fixed across files, with a new regression test.
- example-failed-attempt: tokens' expiry checks; careful notes, two ineffective edits, no fix.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from client.snapshot import snapshot_dir  # noqa: E402
from client.writer import TraceWriter  # noqa: E402

REPOS = ROOT / "repos"
TEST_COMMAND = "python -m pytest -q"


def _pytest_output(failures: list[tuple[str, str]], passed: int, seconds: float) -> str:
    lines = []
    if failures:
        lines.append("=" * 30 + " FAILURES " + "=" * 30)
        for node, message in failures:
            lines.append(f"_____ {node.split('::')[-1]} _____")
            lines.append(message)
        lines.append("=" * 26 + " short test summary info " + "=" * 26)
        lines += [f"FAILED {node} - {message.splitlines()[-1]}" for node, message in failures]
    counts = ", ".join(p for p in (f"{len(failures)} failed" if failures else "", f"{passed} passed") if p)
    lines.append(f"{counts} in {seconds:.2f}s")
    return "\n".join(lines) + "\n"


class Clock:
    """A clock that only moves when the session says so: the writer stamps ended_at from it."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Session:
    """Drives a TraceWriter over an in-memory copy of a repo, with a deterministic clock."""

    def __init__(self, writer: TraceWriter, repo: Path, clock: Clock):
        self.w = writer
        self.clock = clock
        self.files = {p.relative_to(repo).as_posix(): p.read_text() for p in repo.rglob("*") if p.is_file()}

    def at(self, dt: float) -> float:
        self.clock.t += dt
        return self.clock.t

    def note(self, dt: float, kind: str, text: str) -> None:
        self.w.note(kind, text, ts=self.at(dt))

    def edit(self, dt: float, path: str, old: str, new: str) -> None:
        before = self.files[path]
        if before.count(old) != 1:
            raise SystemExit(f"{path}: the text to replace must occur exactly once: {old!r}")
        after = before.replace(old, new)
        self.files[path] = after
        self.w.edit_file(path, before, after, ts=self.at(dt))

    def create(self, dt: float, path: str, text: str) -> None:
        self.files[path] = text
        self.w.edit_file(path, None, text, ts=self.at(dt))

    def pytest(self, dt: float, failures: list[tuple[str, str]], passed: int, seconds: float) -> None:
        out = _pytest_output(failures, passed, seconds)
        ts = self.at(dt)
        self.w.cmd_run(TEST_COMMAND, exit_code=1 if failures else 0, duration_s=seconds, stdout=out, stderr="", ts=ts)
        self.w.test_run(
            "pytest",
            TEST_COMMAND,
            passed=passed,
            failed=len(failures),
            duration_s=seconds,
            failing_tests=[node for node, _ in failures],
            ts=ts + 0.01,
        )

    def shell(self, dt: float, command: str, stdout: str, exit_code: int = 0, seconds: float = 0.05) -> None:
        self.w.cmd_run(command, exit_code=exit_code, duration_s=seconds, stdout=stdout, stderr="", ts=self.at(dt))

    def commit(self, dt: float, message: str) -> None:
        sha = hashlib.sha1(f"{self.w.trace_id}:{message}".encode()).hexdigest()
        self.shell(dt, f'git commit -am "{message}"', f"[main {sha[:7]}] {message}\n 1 file changed\n")
        self.w.commit(sha, message, ts=self.at(0.2))


def _manifest(trace_id: str, participant: str, task: dict, repo_name: str, started: float) -> dict:
    return {
        "trace_id": trace_id,
        "session": {"participant_id": participant, "consent": True},
        "task": task,
        "repo": {
            "origin": f"https://example.org/prt-examples/{repo_name}.git",
            "start_commit": hashlib.sha1(repo_name.encode()).hexdigest(),
        },
        "environment": {"os": "Debian GNU/Linux 12", "python_version": "3.11"},
        "qa": {"test_command": TEST_COMMAND, "timeout_s": 120},
        "client": {"name": "prt-examples", "version": "1.0"},
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
    }


def _session(out: Path, trace_id: str, participant: str, task: dict, repo_name: str, t0: float, **kw) -> Session:
    repo = REPOS / repo_name
    clock = Clock(t0)
    writer = TraceWriter(
        str(out),
        _manifest(trace_id, participant, task, repo_name, t0),
        snapshot=snapshot_dir(repo),
        clock=clock,
        **kw,
    )
    return Session(writer, repo, clock)


def simple_fix(out: Path) -> None:
    t0 = 1_760_000_000.0  # 2025-10-09T08:53:20Z
    task = {
        "id": "BUG-101",
        "title": "mean() returns wrong values",
        "description": "Reports show averages that are too high; mean([1, 2, 3]) gives 3.",
    }
    s = _session(out, "example-simple-fix", "dev-alice", task, "calculator", t0, chunk_max_events=4)
    with s.w:
        s.note(2, "plan", "Run the test suite, find why mean() is off, fix it.")
        s.pytest(
            5,
            [
                ("tests/test_stats.py::test_mean", "    assert mean([1, 2, 3]) == 2\nE   assert 3.0 == 2"),
                (
                    "tests/test_stats.py::test_mean_single_value",
                    "stats.py:8: ZeroDivisionError\nE   ZeroDivisionError: division by zero",
                ),
            ],
            passed=2,
            seconds=0.41,
        )
        s.note(12, "observation", "mean([1, 2, 3]) gives 3.0 and mean([5]) divides by zero: the divisor is one too small.")
        s.edit(20, "stats.py", "return sum(values) / (len(values) - 1)", "return sum(values) / len(values)")
        s.pytest(6, [], passed=4, seconds=0.38)
        s.commit(10, "Fix mean() divisor")
        s.at(3)  # the session ends a moment after its last event


def multi_file_fix(out: Path) -> None:
    t0 = 1_760_086_400.0  # 2025-10-10T08:53:20Z
    task = {
        "id": "BUG-202",
        "title": "Discounted cart totals are too low",
        "description": "A cart with 5 books at 20.00 and a 10% discount totals 81.00 instead of 90.00.",
    }
    s = _session(out, "example-multi-file-fix", "dev-bob", task, "inventory", t0, chunk_max_events=7, compress=True)
    failing = [("tests/test_cart.py::test_total_with_discount", "    assert cart.total() == 90.0\nE   assert 81.0 == 90.0")]
    with s.w:
        s.note(
            3,
            "plan",
            "Reproduce with the test suite, narrow down which layer (money, pricing, cart) loses the amount, fix it and add a regression test.",
        )
        s.pytest(6, failing, passed=7, seconds=0.52)
        s.note(
            15, "observation", "Only test_total_with_discount fails: expected 90.0, got 81.0. Totals without discounts are right."
        )
        s.note(
            20,
            "hypothesis",
            "round_money's epsilon nudge distorts discounted amounts; rounding with Decimal should give exact cents.",
        )
        s.edit(
            40,
            "inventory/money.py",
            '"""Money helpers: amounts are floats in the shop\'s currency, shown with two decimals."""\n\n\ndef round_money(amount):\n    """Round to cents, halves away from zero."""\n    return round(amount + (0.0000001 if amount >= 0 else -0.0000001), 2)\n',
            '"""Money helpers: amounts are floats in the shop\'s currency, shown with two decimals."""\n\nfrom decimal import ROUND_HALF_UP, Decimal\n\n\ndef round_money(amount):\n    """Round to cents, halves away from zero."""\n    return float(Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))\n',
        )
        s.pytest(8, failing, passed=7, seconds=0.49)
        s.note(
            25,
            "observation",
            "Still 81.0 with Decimal rounding, so rounding is not the cause. 81 = 100 x 0.9 x 0.9: the 10% discount is applied twice.",
        )
        s.note(5, "decision", "Revert the rounding change: it did not fix anything and the float version passes its own tests.")
        s.edit(
            15,
            "inventory/money.py",
            'from decimal import ROUND_HALF_UP, Decimal\n\n\ndef round_money(amount):\n    """Round to cents, halves away from zero."""\n    return float(Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))\n',
            '\ndef round_money(amount):\n    """Round to cents, halves away from zero."""\n    return round(amount + (0.0000001 if amount >= 0 else -0.0000001), 2)\n',
        )
        s.shell(
            10,
            "grep -rn apply_discount inventory",
            "inventory/pricing.py:6:def apply_discount(amount, percent):\n"
            "inventory/pricing.py:15:    return round_money(apply_discount(unit_price * quantity, discount_percent))\n"
            "inventory/cart.py:6:from inventory.pricing import apply_discount, line_price\n"
            "inventory/cart.py:31:            total += apply_discount(price, line.discount_percent)\n",
        )
        s.note(
            20, "hypothesis", "Cart.total() applies the discount again on a line price that line_price() has already discounted."
        )
        s.edit(
            30,
            "inventory/cart.py",
            "            price = line_price(line.unit_price, line.quantity, line.discount_percent)\n            total += apply_discount(price, line.discount_percent)\n",
            "            total += line_price(line.unit_price, line.quantity, line.discount_percent)\n",
        )
        s.edit(
            5,
            "inventory/cart.py",
            "from inventory.pricing import apply_discount, line_price\n",
            "from inventory.pricing import line_price\n",
        )
        s.pytest(6, [], passed=8, seconds=0.47)
        s.create(
            40,
            "tests/test_regression.py",
            '"""BUG-202: discounts must be applied once per line, whatever the mix of lines."""\n\nfrom inventory.cart import Cart\n\n\n'
            "def test_mixed_discounts_are_applied_once():\n"
            "    cart = Cart()\n"
            '    cart.add("book", 20.0, 5, discount_percent=10)\n'
            '    cart.add("pen", 2.0, 10, discount_percent=50)\n'
            '    cart.add("bag", 15.0, 1)\n'
            "    assert cart.total() == 90.0 + 10.0 + 15.0\n",
        )
        s.pytest(5, [], passed=9, seconds=0.51)
        s.note(
            5,
            "decision",
            "Keep the discount in line_price() only; Cart.total() sums line prices. The regression test covers mixed discounts.",
        )
        s.commit(10, "Apply line discounts once in Cart.total()")
        s.note(
            5, "next_step", "Audit the other callers of apply_discount() in the invoicing module for the same double application."
        )
        s.at(2)  # the session ends a moment after its last event


def failed_attempt(out: Path) -> None:
    t0 = 1_760_172_800.0  # 2025-10-11T08:53:20Z
    task = {
        "id": "BUG-303",
        "title": "Tokens are still accepted at their expiry instant",
        "description": "Security review: a token must be rejected from expires_at on, and is_expired() without `now` crashes for tokens issued with aware datetimes.",
    }
    s = _session(out, "example-failed-attempt", "dev-carol", task, "tokens", t0, chunk_max_events=6)
    failing = [
        (
            "tests/test_tokens.py::test_token_expires_at_boundary",
            "    assert is_expired(token, now=token.expires_at)\nE   assert False",
        ),
        (
            "tests/test_tokens.py::test_default_now_is_timezone_aware",
            "auth/tokens.py:29: TypeError\nE   TypeError: can't compare offset-naive and offset-aware datetimes",
        ),
    ]
    with s.w:
        s.note(
            4, "plan", "Reproduce both failures, then deal with the time-zone crash first since it hides the boundary behaviour."
        )
        s.pytest(6, failing, passed=2, seconds=0.44)
        s.note(18, "observation", "The default `now` is datetime.now(), a naive local time, compared with an aware issued_at.")
        s.note(10, "hypothesis", "Using UTC for the default clock removes the naive/aware mismatch.")
        s.create(
            35,
            "auth/clock.py",
            '"""The clock used for token checks."""\n\nfrom datetime import datetime\n\n\ndef utc_now():\n    return datetime.utcnow()\n',
        )
        s.edit(
            20,
            "auth/tokens.py",
            "from datetime import datetime, timedelta\n",
            "from datetime import datetime, timedelta\n\nfrom auth.clock import utc_now\n",
        )
        s.edit(10, "auth/tokens.py", "    now = now or datetime.now()\n", "    now = now or utc_now()\n")
        s.pytest(7, failing, passed=2, seconds=0.46)
        s.note(
            25,
            "observation",
            "Same TypeError: utcnow() is UTC but still naive, so the comparison still mixes naive and aware values.",
        )
        s.note(
            15,
            "hypothesis",
            "The boundary test may fail on sub-second precision; truncating microseconds on both sides should make the instants equal.",
        )
        s.edit(
            30,
            "auth/tokens.py",
            "    return now > token.expires_at\n",
            "    return now.replace(microsecond=0) > token.expires_at.replace(microsecond=0)\n",
        )
        s.pytest(7, failing, passed=2, seconds=0.45)
        s.note(
            20,
            "observation",
            "Boundary test unchanged: the instants were already equal; the comparison itself excludes the expiry instant.",
        )
        s.note(
            10,
            "next_step",
            "Check with the auth team whether expiry is inclusive, then use an aware datetime.now(timezone.utc) default.",
        )
        s.at(4)  # the session ends a moment after its last event


SESSIONS = (simple_fix, multi_file_fix, failed_attempt)


def generate(out: Path) -> list[str]:
    """Write all example traces under `out` (replacing earlier copies); returns their ids."""
    for name in ("example-simple-fix", "example-multi-file-fix", "example-failed-attempt"):
        shutil.rmtree(out / name, ignore_errors=True)
    for session in SESSIONS:
        session(out)
    return sorted(p.name for p in out.iterdir() if p.is_dir())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "traces"
    for trace_id in generate(target):
        print(f"wrote {target / trace_id}")
