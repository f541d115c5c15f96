"""Helpers the integration tests share: a threaded ZmqListener that collects messages,
deadline polling, skipping (failing in CI) when a requirement is missing, a service's
final ledger, and exact comparison of messages."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arroyo_core.link import ZmqListener
from arroyo_core.message import Event, Message
from services.processes import ServiceProcess
from services.status_server import query_status

HERE = Path(__file__).resolve().parent


def plugin_env() -> dict[str, str]:
    """Environment that lets a service process import ``arroyo_testplugins``."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(HERE) + (os.pathsep + path if path else "")}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def skip_unless(condition: bool, reason: str) -> None:
    """tests/conftest.py's skip_unless (skips, or fails in CI), loaded by path because
    ``conftest`` in sys.modules is whichever conftest pytest imported last."""
    name = "arroyo_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "conftest.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    sys.modules[name].skip_unless(condition, reason)


def status(endpoint: str) -> dict[str, Any]:
    return query_status(endpoint, timeout=5.0)


def final_ledger(process: ServiceProcess) -> dict[str, Any]:
    """The ledger a stopped service logged as its last word ('... stopped; ledger: {...}')."""
    for line in reversed(process.output().splitlines()):
        _, marker, text = line.partition(" stopped; ledger: ")
        if marker:
            return json.loads(text)
    raise AssertionError(f"{process.name} logged no final ledger:\n{process.output()[-3000:]}")


def wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Give ``process`` ``timeout`` seconds to exit, then kill it; either way, reap it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def exit_within(process: ServiceProcess, seconds: float) -> int:
    """Wait for ``process`` to exit; fail (and kill it) if it takes longer than ``seconds``."""
    try:
        return process.process.wait(seconds)
    except Exception:
        process.process.kill()
        process.process.wait()
        raise AssertionError(f"{process.name} did not exit within {seconds} s:\n"
                             f"{process.output()[-3000:]}") from None


class Receiver:
    """A real ZmqListener running in a thread, collecting what it delivers in a queue."""

    def __init__(self, endpoint: str, pattern: str = "pull", **options: Any) -> None:
        self.listener = ZmqListener(endpoint, pattern=pattern, **options)
        self.listener.open()
        self.messages: queue.Queue[Message] = queue.Queue()
        self.thread = threading.Thread(target=self.listener.start, args=(self.messages.put,),
                                       daemon=True)
        self.thread.start()

    def get(self, timeout: float = 20.0) -> Message:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing arrived within {timeout} s; ledger "
                                 f"{self.listener.stats()}") from None

    def take(self, count: int, timeout: float = 20.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        return [self.get(max(0.0, deadline - time.monotonic())) for _ in range(count)]

    def close(self) -> None:
        self.listener.stop()
        self.thread.join(timeout=5)
        self.listener.close()


def as_bytes(value: Any) -> bytes:
    """The C-order bytes of an array or buffer, the way they travel."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return bytes(value)


def assert_same(sent: Message, got: Message) -> None:
    """``got`` is ``sent``, bit for bit: kind, metadata, names, dtypes, shapes, bytes."""
    assert type(got) is type(sent)
    assert got.meta == sent.meta
    if not isinstance(sent, Event):
        return
    assert isinstance(got, Event)
    assert list(got.payload) == list(sent.payload)
    for name, value in sent.payload.items():
        received = got.payload[name]
        if isinstance(value, np.ndarray):
            assert isinstance(received, np.ndarray), name
            assert received.dtype.str == value.dtype.str, name  # byte order included
            assert received.shape == value.shape, name
        else:
            assert not isinstance(received, np.ndarray), name
        assert as_bytes(received) == as_bytes(value), name
