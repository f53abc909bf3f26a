"""`prt bench` says which machine and which file system a result comes from: on the project's VM
the same ingest runs ~12 % faster on an ext4 with a journal, and ~25 % on tmpfs, than on its root
disk (no journal, `discard`), so a number without its disk does not compare."""

from __future__ import annotations

import os
from pathlib import Path

from bench.probes import filesystem, machine

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=100k
30 25 0:27 / /dev/shm rw,nosuid - tmpfs tmpfs rw,size=200k
43 27 7:0 / /mnt/data\\040disk rw,noatime shared:7 - xfs /dev/loop0 rw,attr2
44 27 7:1 / /mnt/data rw - ext4 /dev/loop1 rw
"""


def test_the_deepest_mount_holding_the_path_wins():
    root = filesystem(Path("/var/tmp/x"), MOUNTINFO)
    assert root is not None
    assert (root["mount"], root["type"], root["device"]) == ("/", "ext4", "/dev/vda")
    # mount options first, then the file system's own, each once
    assert root["options"] == "rw,relatime,discard,resv_strict"
    assert filesystem(Path("/mnt/data/lake"), MOUNTINFO)["device"] == "/dev/loop1"
    assert filesystem(Path("/mnt/database"), MOUNTINFO)["mount"] == "/"  # a name that only starts like a mount


def test_a_mount_on_top_of_another_and_escaped_names():
    shm = filesystem(Path("/dev/shm/bench"), MOUNTINFO)
    assert shm["options"] == "rw,nosuid,size=200k"  # the later of two mounts on one point is the visible one
    spaced = filesystem(Path("/mnt/data disk/inbox"), MOUNTINFO)
    assert (spaced["mount"], spaced["type"], spaced["options"]) == ("/mnt/data disk", "xfs", "rw,noatime,attr2")
    assert "journal" not in spaced and "journal" not in shm  # asked of ext3/ext4 only


def test_ext4_says_whether_it_keeps_a_journal(tmp_path):
    (tmp_path / "loop1-8").mkdir()  # what the kernel lists under /proc/fs/jbd2 for a journaled /dev/loop1
    assert filesystem(Path("/mnt/data/x"), MOUNTINFO, journals=tmp_path)["journal"] is True
    assert filesystem(Path("/srv"), MOUNTINFO, journals=tmp_path)["journal"] is False  # /dev/vda: none listed
    assert filesystem(Path("/srv"), MOUNTINFO, journals=tmp_path / "absent")["journal"] is False


def test_this_machine(tmp_path):
    m = machine(tmp_path)
    assert m["cores"] == os.cpu_count() and m["memory_gib"] > 0 and m["python"].startswith("3.")
    fs = m["filesystem"]
    assert fs is not None and fs["type"] and tmp_path.resolve().as_posix().startswith(fs["mount"])
    assert os.stat(tmp_path).st_dev == os.stat(fs["mount"]).st_dev  # the mount the folder is really on
