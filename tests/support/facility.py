"""Third-party servers for the facility adapters' tests, each a real child process: the
karabo-bridge package's simulator and pvapy's areaDetector simulator; and a Recorder, a
sink that keeps each message's metadata and what its arrays were, not the arrays."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message
from services.processes import free_port
from tests.support.waiting import wait_for, wait_or_kill


def script(name: str) -> str | None:
    """The console script ``name`` beside this Python (the venv's), or on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


class Child:
    """A child process started by ``start()`` and stopped (SIGTERM, then SIGKILL) by
    ``stop()``; its output goes to ``log`` so a failing test can show it."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log, self.env = argv, log, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(self.env or {})})

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
        if self.process is not None:
            wait_or_kill(self.process, 10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def karabo_sim(directory: Path, pattern: str = "REP", protocol: str = "2.2") -> Child:
    """``karabo-bridge-server-sim`` on a free port (``.port``): one AGIPD module of raw
    zeros per train (128x512x64 uint16 data and gain, 16 MiB), the smallest it makes."""
    port = free_port()
    child = Child([script("karabo-bridge-server-sim") or "karabo-bridge-server-sim",
                   "-z", pattern, "-p", protocol, "-d", "AGIPDModule", "-r", "-g", "zeros",
                   str(port)], directory / f"karabo-sim-{port}.log")
    child.port = port  # type: ignore[attr-defined]
    return child


# EPICS finds channels by UDP search. Each test run takes private ports and searches only
# the loopback interface, where the servers it starts listen (EPICS_PVAS_INTF_ADDR_LIST:
# by default a server answers searches on every interface but loopback).
def epics_environment() -> dict[str, str]:
    return {"EPICS_PVA_ADDR_LIST": "127.0.0.1", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_PVA_SERVER_PORT": str(free_port()),
            "EPICS_PVA_BROADCAST_PORT": str(_free_udp_port())}


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ad_sim(directory: Path, channel: str, env: dict[str, str], *, shape: tuple[int, int],
           dtype: str = "uint16", fps: float = 100, runtime: float = 60) -> Child:
    """``pvapy-ad-sim-server`` serving ``channel``: 8 random frames of ``shape`` (ny, nx)
    over and over, numbered from 1, for ``runtime`` seconds. (It publishes after a start
    delay of 1 s: with none, its publisher may look in its frame cache before its producer
    filled it, and die with a KeyError.)"""
    ny, nx = shape
    argv = [script("pvapy-ad-sim-server") or "pvapy-ad-sim-server", "-cn", channel,
            "-nx", str(nx), "-ny", str(ny), "-dt", dtype, "-fps", str(fps), "-rt", str(runtime),
            "-std", "1", "-shd", "0", "-dc", "-rp", "0", "-nf", "8", "-cs", "8"]
    return Child(argv, directory / f"ad-sim-{channel}.log", env)


class Recorder(Publisher):
    """Keeps every message's kind and metadata, and of each Event's arrays their dtype,
    shape and a few numbers (``check`` sees each Event first and may fail the test)."""

    def __init__(self, check: Any = None) -> None:
        self.kinds: list[str] = []
        self.metas: list[dict[str, Any]] = []
        self.arrays: list[dict[str, tuple[str, tuple[int, ...]]]] = []
        self.problems: list[str] = []
        self.check = check
        self.lock = threading.Lock()
        self.context: Any = None  # a callable whose text a failed wait shows

    def publish(self, message: Message) -> None:
        if isinstance(message, Event) and self.check is not None:
            try:
                self.check(message)
            except AssertionError as exc:
                self.problems.append(f"{message.meta.get('frame')}: {exc}")
        arrays = {name: (value.dtype.str, value.shape) for name, value in
                  (message.payload.items() if isinstance(message, Event) else ())
                  if isinstance(value, np.ndarray)}
        with self.lock:
            self.kinds.append(message.kind)
            self.metas.append(message.meta)
            self.arrays.append(arrays)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [meta for k, meta in zip(self.kinds, self.metas, strict=True) if k == kind]

    def wait(self, kind: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        try:
            wait_for(lambda: len(self.of(kind)) >= count, timeout, f"{count} {kind} messages")
        except AssertionError as exc:
            context = self.context() if self.context is not None else ""
            raise AssertionError(f"{exc} (the last: {self.kinds[-5:]})\n{context}") from None
        return self.of(kind)
