"""`python -m prt_unittest ARGS` runs exactly what `python -m unittest ARGS` runs, and records each
test's outcome with the same reporter as the pytest plugin (stdlib only).

Test ids are unittest's own, class-qualified (`tests.test_core.TestParse.test_empty`). A module
that fails to import (unittest's `_FailedTest`) is a collection error, not a test. The exit
status follows pytest's meaning: 0 all passed, 1 some failed, 2 usage error, 5 no tests ran.
With PRT_QA=1 (the QA sandbox) `--failfast` is ignored, so one failure never hides the rest.
"""

import os
import sys
import time
import unittest

from prt_junit import hard_exit, worse, write_report

_FAILED_TEST = "unittest.loader._FailedTest."


def _file_of(test):
    module = sys.modules.get(type(test).__module__)
    path = getattr(module, "__file__", None)
    return os.path.relpath(path, os.getcwd()).replace(os.sep, "/") if path else ""


def _message(err):
    if err is None:
        return ""
    text = str(err[1]).strip()
    return f"{err[0].__name__}: {text.splitlines()[0] if text else ''}"


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prt_results = {}
        self.prt_collection_errors = []
        self._started = {}

    def _put(self, test, status, err=None):
        test_id = test.id()
        if test_id.startswith(_FAILED_TEST):  # the module could not be imported: its traceback ends with why
            lines = [ln.strip() for ln in str(err[1] if err else "").splitlines() if ln.strip()]
            self.prt_collection_errors.append(f"{test_id[len(_FAILED_TEST) :]}: {(lines or ['?'])[-1][:300]}")
            return
        seconds = time.time() - self._started.get(test_id, time.time())
        old = self.prt_results.get(test_id)
        if old is None or worse(old[0], status) != old[0]:
            self.prt_results[test_id] = (status, _file_of(test), seconds, _message(err))

    def startTest(self, test):
        self._started[test.id()] = time.time()
        super().startTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._put(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._put(test, "failed", err)

    def addError(self, test, err):
        super().addError(test, err)
        self._put(test, "error", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._put(test, "skipped")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._put(test, "skipped", err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._put(test, "failed")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:  # a failing subtest fails its test
            failed = issubclass(err[0], test.failureException)
            self._put(test, "failed" if failed else "error", err)


class _Runner(unittest.TextTestRunner):
    resultclass = _Result

    def __init__(self, *args, **kwargs):
        if os.environ.get("PRT_QA") == "1":
            kwargs["failfast"] = False
        super().__init__(*args, **kwargs)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        program = unittest.main(module=None, argv=["python -m unittest", *argv], testRunner=_Runner, exit=False)
    except SystemExit as exc:  # usage errors (--help, a bad option) exit from inside unittest
        return exc.code if isinstance(exc.code, int) else 2
    result = program.result
    ran = len(result.prt_results)
    if result.prt_collection_errors or not result.wasSuccessful():
        status = 1
    elif ran == 0:
        status = 5
    else:
        status = 0
    folder = os.environ.get("PRT_REPORT_DIR")
    if folder:
        version = ".".join(str(n) for n in sys.version_info[:3])
        write_report(folder, "unittest", version, status, ran, result.prt_results, result.prt_collection_errors, [])
    return status


if __name__ == "__main__":
    code = main()
    hard_exit(code)
    sys.exit(code)
