"""Keeping freed large blocks in the process, so a buffer allocated per message is reused
instead of faulted in afresh.

Whatever carries a message allocates buffers for it: libzmq for each message it receives,
pika for each body it sends and receives, pvapy for each frame (a new one while the
previous is still held downstream), a reliable link's window freeing acknowledged messages
in bursts. glibc's malloc returns large freed blocks to the kernel (``munmap``, a trim of
the heap top once a few MiB are free, and, in a thread's own arena such as libzmq's I/O
thread's, each 64 MiB heap of it that falls empty), and the next buffer is faulted in page
by page, about 3.5 us a 4 KiB page here (shared/PERFORMANCE.md): as long as copying it,
more than a millisecond for an 8 MB frame, and half the CPU pika spends on sending a 1 MiB
message. Raising malloc's thresholds, and its top pad to a whole thread heap (glibc keeps
an empty heap while its pad would not fit in the one before it), keeps those blocks for
reuse: the process keeps the memory of its busiest moment, which its memory budget bounds
anyway, and each arena maps up to one heap (64 MiB) more than it uses, untouched (no
resident memory; on a host with strict overcommit, ``vm.overcommit_memory = 2``, it
counts). Every runtime does it when it opens; the pvapy, pika and DECTRIS adapters do it
too, for use without a runtime.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
LARGEST_HEAP_BLOCK = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
THREAD_HEAP = 2 * LARGEST_HEAP_BLOCK  # a thread arena's heap (glibc's HEAP_MAX_SIZE)
SETTINGS = ((M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK), (M_TRIM_THRESHOLD, 2**30),
            (M_TOP_PAD, THREAD_HEAP))


def keep_freed_blocks() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MiB, and the heaps of threads' arenas,
    for reuse (a block goes back to the arena of the thread that allocated it, whichever
    thread frees it). Returns False where that cannot be set (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt (musl)
        return False
    done = all(mallopt(option, value) == 1 for option, value in SETTINGS)
    if not done:
        log.debug("mallopt refused a setting; freed blocks may be returned to the kernel")
    return done
