"""`prt bench`: the benchmark harness, outside the pipeline it measures.

generate    synthetic inboxes and copies of the examples
probes      memory, CPU, files read, the machine and its file system
runs        each benchmark: ingest against the floor, QA, the judge, reads, a profile; every
            measured run in a child process (`python -m bench KIND ...`)
latency     what a user waits on: `prt` commands start to exit, a dropped trace to its rows (serve)
"""

from bench.generate import clone_examples, generate_inbox
from bench.latency import bench_freshness, bench_latency
from bench.probes import PeakMemory, filesystem, machine
from bench.runs import bench_export, bench_ingest, bench_judge, bench_profile, bench_qa, bench_read

__all__ = [
    "PeakMemory",
    "bench_export",
    "bench_freshness",
    "bench_ingest",
    "bench_judge",
    "bench_latency",
    "bench_profile",
    "bench_qa",
    "bench_read",
    "clone_examples",
    "filesystem",
    "generate_inbox",
    "machine",
]
