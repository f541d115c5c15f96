"""Which process is which, and whether it still lives, on one host.

A pool's owner and every process holding one of its slots are named by their process id
*and* the time the kernel started them (``/proc/PID/stat``, field 22), so a process id
that the kernel has reused for another program never passes for the dead one. Whether a
process lives is then certain and immediate on one host: a process killed with
``kill -9`` is dead the moment the kernel has reaped it, with no timeout to tune.
"""

from __future__ import annotations

import os
from functools import cache
from typing import NamedTuple


class Identity(NamedTuple):
    """A process: its id and the kernel's start time of it (clock ticks since boot)."""

    pid: int
    start: int


def start_time(pid: int) -> int | None:
    """When the kernel started process ``pid`` (clock ticks since boot), None if none is."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields count from its end.
    fields = text[text.rindex(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has ended: only its parent has not read its status
        return None
    return int(fields[19])


def this_process() -> Identity:
    """This process's identity (looked up once per process id: a fork gets its own)."""
    return _identity(os.getpid())


@cache
def _identity(pid: int) -> Identity:
    start = start_time(pid)
    assert start is not None, "/proc is not mounted"
    return Identity(pid, start)


def alive(identity: Identity) -> bool:
    """True while the process ``identity`` names runs (False once it ended, even if its
    id now belongs to another process)."""
    return start_time(identity.pid) == identity.start


@cache
def host_key() -> str:
    """What two processes must share to share memory and process ids: the boot (so the
    same host, booted once) and the pid namespace (so a pid means the same process)."""
    with open("/proc/sys/kernel/random/boot_id") as boot:
        boot_id = boot.read().strip()
    return f"{boot_id}/{os.stat('/proc/self/ns/pid').st_ino}"
