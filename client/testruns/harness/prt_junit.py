"""Write one test report: JUnit XML with exact test ids and the runner's own facts (stdlib only).

    <testsuites><testsuite name="<framework>" tests=.. failures=.. errors=.. skipped=..>
      <properties>
        prt.framework, prt.runner_version, prt.exit_status, prt.collected,
        prt.collection_error (one per file or module that could not be collected: "path: message"),
        prt.tampered (one per test whose outcome a conftest or plugin changed)
      </properties>
      <testcase id="<exact test id>" file="<path from the repo root>" classname=.. name=.. time=..>
        <failure|error|skipped message=".."/>
      </testcase>

tasks/qa/grade.py reads it (and plain JUnit XML from other runners).
"""

import contextlib
import os
import re
import sys
import xml.etree.ElementTree as ET

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TAGS = {"failed": "failure", "error": "error", "skipped": "skipped"}
_WORST = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def clean(text, limit=2000):
    """Text that XML 1.0 can hold, at most `limit` characters."""
    text = _XML_ILLEGAL.sub("?", str(text))
    return text if len(text) <= limit else text[: limit - 20] + " [... cut ...]"


def worse(old, new):
    """The worse of two statuses: a test reported in several phases keeps its worst."""
    return new if old is None or _WORST[new] > _WORST[old] else old


def write_report(folder, framework, runner_version, exit_status, collected, results, collection_errors, tampered):
    """Write `main-<nonce>.xml` (or `worker-...` under pytest-xdist) into `folder`.

    results: {test id: (status, file, seconds, message)}; status passed|failed|error|skipped.
    """
    suite = ET.Element("testsuite", name=framework)
    props = ET.SubElement(suite, "properties")

    def prop(name, value):
        ET.SubElement(props, "property", name=name, value=clean(value, 1000))

    prop("prt.framework", framework)
    prop("prt.runner_version", runner_version)
    if exit_status is not None:
        prop("prt.exit_status", int(exit_status))
    prop("prt.collected", int(collected))
    for err in collection_errors:
        prop("prt.collection_error", err)
    for t in tampered:
        prop("prt.tampered", t)
    counts = {"failed": 0, "error": 0, "skipped": 0}
    for test_id, (status, file, seconds, message) in sorted(results.items()):
        parts = test_id.split("::")
        case = ET.SubElement(
            suite,
            "testcase",
            id=clean(test_id, 10000),
            file=clean(file or "", 4096),
            classname=clean(".".join(parts[:-1]) if len(parts) > 1 else test_id.rpartition(".")[0], 4096),
            name=clean(parts[-1] if len(parts) > 1 else test_id.rpartition(".")[2], 4096),
            time="%.3f" % (seconds or 0.0),
        )
        if status in _TAGS:
            counts[status] += 1
            ET.SubElement(case, _TAGS[status], message=clean(message or ""))
    suite.set("tests", str(len(results)))
    suite.set("failures", str(counts["failed"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    root = ET.Element("testsuites")
    root.append(suite)
    role = "worker" if os.environ.get("PYTEST_XDIST_WORKER") else "main"
    name = f"{role}-{os.urandom(8).hex()}.xml"
    data = ET.tostring(root, encoding="utf-8")
    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def hard_exit(status):
    """End the process right after its report is written, when QA asks (PRT_HARD_EXIT=1): no atexit
    handler or later hook of the code under test runs after the results are final."""
    if os.environ.get("PRT_HARD_EXIT") != "1":
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or replaced stream must not keep the exit status from the sandbox
            stream.flush()
    os._exit(int(status))
