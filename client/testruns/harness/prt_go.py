"""`python -m prt_go go test [ARGS]` runs `go test -json ARGS` and records each test with the same
reporter as the pytest plugin (stdlib only). The output a developer sees is go test's own.

Test ids are `<package import path>::<TestName>` (subtests `TestName/case`). A package that does not
build is a collection error, not a test. Exit status as pytest's: 0 all passed, 1 some failed or a
package did not build, 2 go could not run, 5 no tests ran.
"""

import json
import os
import subprocess
import sys

from prt_junit import hard_exit, worse, write_report


def main(argv):
    if argv[:2] != ["go", "test"]:
        sys.stderr.write("usage: python -m prt_go go test [ARGS]\n")
        return 2
    args = argv[2:]
    if "-json" not in args:
        args = ["-json", *args]
    try:
        # Go before 1.21 prints build errors as plain text on stderr: read both, in order.
        proc = subprocess.Popen(
            ["go", "test", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        sys.stderr.write(f"prt_go: could not run go: {exc}\n")
        return 2
    results, outputs, tested, failed_packages = {}, {}, set(), {}
    plain, header = {}, None  # build errors as text, under their "# package" header
    for line in proc.stdout:
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError
        except ValueError:
            sys.stdout.write(line)
            words = line.split()
            if words[:1] == ["FAIL"] and len(words) >= 2 and ("[build" in line or "[setup" in line):
                failed_packages.setdefault(words[1], "")  # Go before 1.21: no JSON for a package that does not build
            elif line.startswith("# "):
                header = line[2:].split()[0] if line[2:].split() else None
            elif header:
                plain.setdefault(header, []).append(line)
            continue
        action, package, test = ev.get("Action"), ev.get("Package", ""), ev.get("Test")
        if action == "output":
            text = ev.get("Output", "")
            sys.stdout.write(text)
            key = (package, test)
            outputs.setdefault(key, []).append(text)
            continue
        if test and action in ("pass", "fail", "skip"):
            tested.add(package)
            status = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
            test_id = f"{package}::{test}"
            old = results.get(test_id)
            message = "".join(outputs.get((package, test), []))[-500:] if status == "failed" else ""
            if old is None or worse(old[0], status) != old[0]:
                results[test_id] = (status, "", float(ev.get("Elapsed") or 0.0), message)
        elif not test and action == "fail":
            failed_packages[package] = "".join(outputs.get((package, None), []))
    code = proc.wait()
    errors = []
    for package, text in sorted(failed_packages.items()):
        if package not in tested:  # failed before any test ran: it did not build
            text += "".join(plain.get(package, []))
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("FAIL", "#"))]
            errors.append(f"{package}: {(lines or ['the package does not build'])[0][:300]}")
    if code not in (0, 1) and not errors and not results:  # go itself failed (a bad flag, no go.mod)
        status = 2
    elif errors or any(r[0] in ("failed", "error") for r in results.values()):
        status = 1
    elif not results:
        status = 5
    else:
        status = 0
    folder = os.environ.get("PRT_REPORT_DIR")
    if folder:
        version = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip() or "?"
        write_report(folder, "go", version, status, len(results), results, errors, [])
    return status


if __name__ == "__main__":
    code = main(sys.argv[1:])
    hard_exit(code)
    sys.exit(code)
