"""What the benchmark measures with: peak memory of a process tree (PSS), CPU use of the machine,
files and row groups a polars query read, Delta files per table, and the machine and file system
a result was measured on."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path


class PeakMemory:
    """Peak memory of this process and all its descendants, sampled on a thread.

    Two numbers: `rss_mb`, the largest sum of resident sizes (/proc/PID/statm, constant time,
    read every `interval_s`), which counts a page shared by forked workers once per process, so
    it is an upper bound; and `peak_mb`, the proportional set size (pages shared by n processes
    count 1/n in each), the memory the run really holds. PSS costs a walk of every page table
    (/proc/PID/smaps_rollup: tens of milliseconds for a worker of 600 MiB); walked 20 times a
    second it took 9 % of the machine away from the run it measured (`perf record -a`). So it
    is walked only when the RSS sum passes the last walk's by `walk_margin` (2 %), at most
    once every `walk_s` (1 s): the moments when the run holds the most. Walked at every new
    high, up to 4 times a second, the RSS sum's slow creep kept the walks going all run long
    (py-spy: 0.8 s of this process's time in 8 s of a run), for the same peak (1.43 GiB).
    """

    def __init__(self, interval_s: float = 0.05, walk_s: float = 1.0, walk_margin: float = 0.02):
        self.interval_s = interval_s
        self.walk_s = walk_s
        self.walk_margin = walk_margin
        self.peak_mb = 0.0
        self.rss_mb = 0.0
        self.at_peak: list[int] = []
        self._walked_at_rss = 0.0
        self._pids: list[int] = []
        self._samples = 0
        self._last_walk = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, *, final: bool = False) -> None:
        me = os.getpid()
        if self._samples % 10 == 0 or not self._pids:  # workers come and go seldom: re-list every 10th
            self._pids = _tree(me)
        self._samples += 1
        rss = sum(_rss_kb(p) for p in self._pids) / 1024
        self.rss_mb = max(self.rss_mb, rss)
        if not final and (
            rss <= self._walked_at_rss * (1 + self.walk_margin) or time.monotonic() - self._last_walk < self.walk_s
        ):
            return
        self._last_walk, self._walked_at_rss = time.monotonic(), rss
        by_pid = {p: _pss_kb(p) / 1024 for p in self._pids}
        total = sum(by_pid.values())
        if total > self.peak_mb:
            self.peak_mb = total
            self.at_peak = sorted((round(mb) for p, mb in by_pid.items() if p != me), reverse=True)
            self.at_peak.insert(0, round(by_pid.get(me, 0)))


class CpuUse:
    """Machine-wide CPU seconds (from /proc/stat) spent while the block runs, by kind: whether a
    run is bound by the CPU (busy near the core count), by the disk (iowait) or by neither."""

    def __enter__(self) -> CpuUse:
        self._t0, self._start = time.perf_counter(), _cpu_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        tick = os.sysconf("SC_CLK_TCK")
        d = {k: (v - self._start.get(k, 0)) / tick for k, v in _cpu_jiffies().items()}
        self.seconds = {k: round(v, 2) for k, v in d.items()}
        self.busy_cores = round((d.get("user", 0) + d.get("system", 0)) / wall, 2) if wall > 0 else 0.0


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); [] when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _cpu_jiffies() -> dict[str, int]:
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return {}
    user, nice, system, idle, iowait, irq, softirq = values
    return {"user": user + nice, "system": system + irq + softirq, "idle": idle, "iowait": iowait}


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and len(fields := _stat_fields(int(entry))) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def resident_mb(pid: int) -> float:
    """The resident size of one process now, in MiB (0 when it is gone)."""
    return round(_rss_kb(pid) / 1024, 1)


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def files(lk, name: str) -> int:
    return len(lk.tables.open(name).file_uris())


def scan_stats(query) -> dict:
    """Run a polars query with POLARS_VERBOSE on and read back, from polars' own log, how many
    files and row groups it read: the proof that statistics and partitions skip the rest."""
    import polars as pl

    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            with pl.Config(verbose=True):
                t0 = time.perf_counter()
                df = query()
                seconds = time.perf_counter() - t0
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    files = [int(m) for m in re.findall(r"Readers init: (\d+) /", text)]
    groups = [(int(a), int(b)) for a, b in re.findall(r"reading (\d+) / (\d+) row groups", text)]
    return {
        "seconds": seconds,
        "rows": df.height,
        "files_read": sum(files),
        # None when polars logged no row-group pruning (nothing left to filter inside the files read)
        "row_groups_read": sum(a for a, _ in groups) if groups else None,
        "row_groups_in_files_read": sum(b for _, b in groups) if groups else None,
    }


def delta_files(lake: Path) -> dict[str, int]:
    return {
        t.name: sum(1 for p in t.rglob("*.parquet") if "_delta_log" not in p.parts)
        for t in sorted(lake.iterdir())
        if (t / "_delta_log").is_dir()
    }


def machine(path: Path) -> dict:
    """The machine a result comes from, and the file system `path` is on (where the inbox and the
    lake were): on this project's 2-core VM the same ingest runs ~12 % faster on an ext4 with a
    journal, and ~25 % faster on tmpfs, than on its root disk's ext4 without a journal, mounted
    with `discard` (docs/performance.md)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _proc_lines("cpuinfo") if line.startswith("model name")), None)
    mem_kb = next((int(line.split()[1]) for line in _proc_lines("meminfo") if line.startswith("MemTotal:")), 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": sys.version.split()[0],
        "filesystem": filesystem(path),
    }


def filesystem(path: Path, mountinfo: str | None = None, journals: Path = Path("/proc/fs/jbd2")) -> dict | None:
    """The mount `path` is on, from /proc/self/mountinfo (or `mountinfo`'s text): mount point,
    type, device and options, and for ext3/ext4 whether it keeps a journal (`journals` lists a
    `<device>-<inode>` entry for each journal in use). None where there is no mountinfo (not Linux)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # "\040" is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the deepest, and the last of equals: on top
            options = list(dict.fromkeys(fields[5].split(",") + tail[2].split(",")))
            best = (point, tail[0], tail[1], options)
    if best is None:
        return None
    point, fstype, device, options = best
    out: dict = {"mount": point, "type": fstype, "device": device, "options": ",".join(options)}
    if fstype in ("ext3", "ext4"):
        name = os.path.basename(device)
        out["journal"] = journals.is_dir() and any(p.name.startswith(f"{name}-") for p in journals.iterdir())
    return out


def _proc_lines(name: str) -> list[str]:
    try:
        return Path("/proc", name).read_text().splitlines()
    except OSError:
        return []
