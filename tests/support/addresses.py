"""Addresses for the tests' sockets that no other test, nor another run of the suite at the
same time, can take.

A socket a service process binds is an ``ipc://`` path in a directory made for one test
(or one module's fixture) and removed after it. libzmq's ipc paths must fit a Unix socket
address (107 bytes) and pytest's ``tmp_path`` can be longer, so the directory is a short
one of its own in the system's temporary directory.

Where a test is about tcp, the binding side picks the port: a service binds
``@tcp://127.0.0.1:*`` and says what it got (its READY line, read with
``ServiceProcess.bound``; a link's status record, ``bound``); a raw pyzmq socket uses
``bind_to_random_port``. No port is chosen before the socket that binds it, except where a
test needs the number first (see ``chains`` and ``redis_server``).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

IPC_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less its terminating NUL


class IpcDirectory:
    """``ipc://`` addresses in a short directory of their own; :meth:`remove` deletes it
    (and any socket files libzmq left there)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="arroyo-"))
        self._names = (str(n) for n in itertools.count(1))

    def __call__(self, name: str | None = None) -> str:
        """``ipc://DIR/NAME``, a fresh NAME unless one is given."""
        path = f"{self.path}/{name or next(self._names)}"
        if len(path.encode()) > IPC_PATH_MAX:
            raise ValueError(f"{path!r} is longer than an ipc path may be ({IPC_PATH_MAX} "
                             "bytes): set TMPDIR to a shorter directory")
        return f"ipc://{path}"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
