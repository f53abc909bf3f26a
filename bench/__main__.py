"""`python -m bench KIND ARGS...`: one measured run in this process (bench/runs.py starts it), its result as a JSON line."""

import json
import sys

from bench.runs import CHILDREN

if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind not in CHILDREN:
        raise SystemExit(f"unknown bench child {kind}; known: {', '.join(CHILDREN)}")
    print(json.dumps(CHILDREN[kind](*rest), default=str))
