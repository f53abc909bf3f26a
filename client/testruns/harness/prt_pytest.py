"""The pytest plugin of QA and `prt run`: every test's outcome, as pytest itself decided it.

Loaded with `-p prt_pytest` (the folder on PYTHONPATH, the report folder in PRT_REPORT_DIR).
Besides each test's status it records what tells a run that never really ran: the tests
collected, every file that failed to collect, and pytest's exit status.

Outcomes a conftest or plugin changed are caught where pytest makes its reports: once
collection is done (every conftest loaded), a hook wrapper is registered that runs outside
every other one. It reads the exception of each test phase before any other wrapper sees the
call, and the report after all of them are done; a phase that raised but comes out "passed" is
recorded as failed and listed as tampered. (A conftest that rewrites the test function itself
before it runs is not caught here: SECURITY.md says what guards against that.)
"""

import os
import sys
import time

import pytest
from prt_junit import hard_exit, worse, write_report


def _first_error_line(text):
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
    return (errors[-1] if errors else lines[-1] if lines else "")[:300]


class _Outcomes:
    """The outermost pytest_runtest_makereport wrapper (registered after collection)."""

    def __init__(self, recorder):
        self.recorder = recorder

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item, call):
        raised = call.excinfo  # read before any other wrapper can touch the call
        outcome = yield
        report = outcome.get_result()
        if raised is not None and report.outcome == "passed":
            self.recorder.tampered.append(f"{report.nodeid} ({call.when} raised {raised.typename})")
            report.outcome = "failed"
            report.longrepr = (
                f"prt: the {call.when} phase raised {raised.typename}, but a conftest or plugin reported it as passed"
            )
        self.recorder.record(report)


class _Recorder:
    def __init__(self, config):
        self.config = config
        self.folder = os.environ.get("PRT_REPORT_DIR")
        self.results = {}
        self.collection_errors = []
        self.tampered = []
        self.collected = 0
        self.exit_status = None
        self.started = {}

    def _file(self, nodeid):
        path = os.path.join(str(self.config.rootdir), nodeid.split("::")[0])
        return os.path.relpath(path, os.getcwd()).replace(os.sep, "/")

    def record(self, report):
        if report.when == "call":
            status = {"passed": "passed", "failed": "failed"}.get(report.outcome, "skipped")
        elif report.outcome == "failed":
            status = "error"
        elif report.outcome == "skipped":
            status = "skipped"
        else:
            self.started.setdefault(report.nodeid, time.time())
            return
        old = self.results.get(report.nodeid)
        message = "" if status == "passed" else _first_error_line(getattr(report, "longreprtext", "") or report.longrepr)
        seconds = time.time() - self.started.get(report.nodeid, time.time())
        if old is None or worse(old[0], status) != old[0]:
            self.results[report.nodeid] = (status, self._file(report.nodeid), seconds, message)

    @pytest.hookimpl(trylast=True)
    def pytest_collectreport(self, report):
        if report.failed:
            where = report.nodeid or "."
            self.collection_errors.append(f"{where}: {_first_error_line(getattr(report, 'longreprtext', report.longrepr))}")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        self.collected = len(session.items)
        self.config.pluginmanager.register(_Outcomes(self), "prt_pytest_outcomes")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.exit_status = int(exitstatus)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        if not self.folder:
            return
        version = getattr(pytest, "__version__", "?")
        write_report(
            self.folder, "pytest", version, self.exit_status, self.collected, self.results, self.collection_errors, self.tampered
        )
        if self.exit_status is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
            hard_exit(self.exit_status)


def pytest_configure(config):
    config.pluginmanager.register(_Recorder(config), "prt_pytest_recorder")


if __name__ == "__main__":  # pragma: no cover - documentation for a reader who runs it
    sys.exit("load this with `python -m pytest -p prt_pytest` (PRT_REPORT_DIR names the report folder)")
