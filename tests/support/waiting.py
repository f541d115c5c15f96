"""Waiting with a deadline: for a condition, or for a process to exit. No test sleeps to
wait out a race."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from services.processes import ServiceProcess


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
