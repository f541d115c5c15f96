"""Start services as child processes and know when they are ready."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGHUP when this process ends,
    however it ends (SIGKILL included); None where there is no ``prctl`` (not Linux).

    SIGHUP, not SIGKILL: the service then stops as it does on SIGTERM, its run closed and
    its ledger logged. Not SIGTERM: the kernel sends the signal again each time the child
    is handed to another of the dying parent's threads (twice or more), and a second
    SIGTERM means "exit at once"; a service takes repeated SIGHUPs as one. A parent that
    died before the child set this is caught by its parent pid having changed.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGHUP)

    return preexec


_given: set[int] = set()


def _low_ports() -> range:
    """Ports just below the ones the kernel gives connecting sockets (Linux: 32768 up)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - 12768), max(1024 + 64, low))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, and not one given before by this process.

    It is drawn from below the range the kernel gives connecting sockets their local ports
    from, so that no connection, of ours or another program's, takes it before it is bound:
    a link that connects to it first could otherwise be given it and connect to itself.
    """
    for port in random.sample(_low_ports(), 64):
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as probe:  # a crowded host: the kernel picks
        probe.bind((host, 0))
        return probe.getsockname()[1]


_ECHO_LOCK = threading.Lock()  # one echoed line at a time: no service's line cut by another's


def echo_line(text: str) -> None:
    """Write ``text`` and its line end to stdout in one write: print writes them apart,
    and unbuffered (PYTHONUNBUFFERED) that is two system calls, between which a line on
    stderr, sharing the reader's pipe, lands mid-line. For a service's own lines
    (``READY``, ``EXIT``) and for those ``arroyo run`` echoes of its services."""
    with _ECHO_LOCK:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


class ServiceProcess:
    """One ``arroyo ROLE --name NAME ...`` child process (or any ``arroyo`` arguments, with
    :meth:`from_argv`) whose output is kept (last lines) and echoed if ``echo``.

    ``wait_ready`` returns once the service printed ``READY`` (its sockets are open);
    :meth:`bound` then reads the addresses it listens at from that line.
    ``prefix`` goes before the command (e.g. ``ip netns exec NS``, which execs it, so
    signals still reach the service); ``own_session`` keeps a terminal's Ctrl-C from
    reaching the child, so that the parent decides how it stops; ``cwd`` is the directory
    it starts in; ``die_with_parent`` has the child sent SIGHUP when this process ends,
    even by SIGKILL (Linux), so a service never outlives what started it.
    """

    def __init__(self, role: str, args: Sequence[str], name: str | None = None,
                 echo: bool = False, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = (), own_session: bool = False,
                 cwd: str | Path | None = None, die_with_parent: bool = False) -> None:
        self.name = name or role
        self._spawn([role, "--name", self.name, *args], echo, env, prefix, own_session, cwd,
                    die_with_parent)

    @classmethod
    def from_argv(cls, argv: Sequence[str], name: str, echo: bool = False,
                  env: dict[str, str] | None = None, prefix: Sequence[str] = (),
                  own_session: bool = False, cwd: str | Path | None = None,
                  die_with_parent: bool = False) -> ServiceProcess:
        """``arroyo ARGV``, e.g. ``services.chain.service_command(chain_file, name)``."""
        process = cls.__new__(cls)
        process.name = name
        process._spawn(argv, echo, env, prefix, own_session, cwd, die_with_parent)
        return process

    def _spawn(self, argv: Sequence[str], echo: bool, env: dict[str, str] | None,
               prefix: Sequence[str], own_session: bool, cwd: str | Path | None,
               die_with_parent: bool = False) -> None:
        # -P: not the current directory on the import path; a service finds user code by
        # services.workdir's rule, wherever it was started from
        command = [*prefix, sys.executable, "-P", "-m", "services", *argv]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, **(env or {})}, start_new_session=own_session, cwd=cwd,
            preexec_fn=_die_with_parent() if die_with_parent else None)
        self.lines: deque[str] = deque(maxlen=2000)
        self.ready_line = ""
        self._ready = threading.Event()
        self._echo = echo
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("READY"):
                self.ready_line = line
                self._ready.set()
            if self._echo:
                echo_line(f"  [{self.name}] {line}")
        self.process.stdout.close()  # the child has exited: do not keep its pipe open

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(list(self.lines)[-20:])
                raise RuntimeError(f"{self.name} did not become ready "
                                   f"(exit code {self.process.poll()}):\n{tail}")

    def bound(self, key: str = "out", index: int = 0) -> str:
        """The address the ready service listens at for ``key`` (``in``, ``out``, ``status``;
        ``index`` picks among several outputs), a port the system chose filled in."""
        found = [word.partition("=")[2] for word in self.ready_line.split()
                 if word.startswith(f"{key}=")]
        if len(found) <= index:
            raise LookupError(f"{self.name} did not say it bound {key!r} "
                              f"(READY line {self.ready_line!r})")
        return found[index]

    def output(self) -> str:
        self._reader.join(timeout=2) if self.process.poll() is not None else None
        return "\n".join(self.lines)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
