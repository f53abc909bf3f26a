"""Test reporters that run inside the sandbox (and in the developer's shell, for `prt run`).

This folder is put on the test process's PYTHONPATH as it is (QA mounts it read-only at
/run/prt/lib), so its modules import as top-level names and use the standard library only:
they run on whatever Python and pytest the sandbox image has (3.7+, pytest 6+).

    prt_junit     writes a report: JUnit XML with each test's exact id and file, plus the runner's
                  own facts as <properties> (exit status, tests collected, collection errors,
                  outcomes a conftest or plugin changed)
    prt_pytest    the pytest plugin (`-p prt_pytest`)
    prt_unittest  `python -m prt_unittest ...`: `python -m unittest ...` with the same reporter

Reports go to the folder named by PRT_REPORT_DIR, as `main-<nonce>.xml` (the process that ran
the session) and `worker-<nonce>.xml` (pytest-xdist workers). In QA that folder is outside the
workspace and the test command never runs in a shell of its own (client/testruns/runners.py), so nothing
but the test process can write there.
"""

from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
"""The folder to put on PYTHONPATH."""
