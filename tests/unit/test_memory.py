"""keep_freed_blocks: a thread that allocates and frees large buffers gets the same memory
back, instead of faulting fresh pages in (arroyo_core/memory.py). Each case runs in a
process of its own, so its malloc settings are the only ones set."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

# Two rounds of 160 blocks of 1 MiB, each written to and freed, from one thread (as libzmq's
# I/O thread allocates a buffer per received message): the minor page faults of the second
# round, and the pages it writes. 160 MiB is more than two of a thread arena's 64 MiB heaps.
ROUNDS = """
import ctypes, resource, sys, threading
from arroyo_core.memory import keep_freed_blocks
if sys.argv[1] == "keep" and not keep_freed_blocks():
    sys.exit("mallopt refused")
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
BLOCK, COUNT = 2**20, 160
def one_round():
    blocks = [libc.malloc(BLOCK) for _ in range(COUNT)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    for block in blocks:
        libc.free(block)
faults = []
def work():
    one_round()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    one_round()
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(faults[0], COUNT * BLOCK // 4096)
"""


def second_round_faults(setting: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", ROUNDS, setting], capture_output=True,
                          text=True, timeout=60, check=True)
    faults, pages = map(int, done.stdout.split())
    return faults, pages


def test_a_thread_reuses_what_it_freed() -> None:
    faults, pages = second_round_faults("keep")
    assert faults < pages // 50, f"{faults} of {pages} pages faulted in again"


def test_without_it_the_pages_fault_in_again() -> None:
    """The control: glibc's defaults give the memory back, so the test above can fail."""
    faults, pages = second_round_faults("default")
    assert faults > pages // 2, f"only {faults} of {pages} pages faulted in again"
