"""`arroyo run CHAIN` as a child process with its output collected (the ``run_chain``
fixture of tests/integration/conftest.py makes them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.waiting import wait_for


class ChainRun:
    """`python -m services run CHAIN` (``env``: added to the environment)."""

    def __init__(self, chain_file: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services", "run", str(chain_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self) -> None:
        """Wait for the 'READY chain' line; on a timeout, show what the run printed."""
        try:
            wait_for(lambda: any(line.startswith("READY chain") for line in self.lines), 30,
                     "the chain to be ready")
        except AssertionError as failure:
            printed = self.text()[-3000:]
            raise AssertionError(f"{failure}; `arroyo run` printed:\n{printed}") from None

    def pids(self) -> dict[str, int]:
        """Each process's pid, from the line `arroyo run` says once all are READY."""
        self.wait_ready()
        line = next(line for line in self.lines if line.startswith("READY chain"))
        return {name: int(pid) for name, pid in re.findall(r"(\S+) pid (\d+)", line)}

    def finish(self, timeout: float = 30) -> int:
        """Wait for `arroyo run` to end; its exit code."""
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as a terminal sends it; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout)
