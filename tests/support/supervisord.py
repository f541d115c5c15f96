"""A real supervisord, run with the project's deploy/supervisor/supervisord.conf, managing
what `arroyo deploy supervisor` generates for a chain file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for, wait_or_kill

ROOT = Path(__file__).resolve().parents[2]
ARROYO = f"{sys.executable} -m services"  # how supervisord starts this checkout's arroyo
# the supervisor package's own commands, whether or not its scripts are on PATH
SUPERVISORD = [sys.executable, "-m", "supervisor.supervisord"]
SUPERVISORCTL = [sys.executable, "-m", "supervisor.supervisorctl"]


class Supervisor:
    """A real supervisord run with deploy/supervisor/supervisord.conf from ``directory``
    and, in its conf.d, what `arroyo deploy supervisor` generates for ``chain_file``
    (``root``: the checkout whose supervisord.conf to use, this one by default)."""

    def __init__(self, directory: Path, chain_file: Path, root: Path | None = None) -> None:
        directory.mkdir()
        shutil.copy((root or ROOT) / "deploy/supervisor/supervisord.conf", directory)
        (directory / "log").mkdir()
        (directory / "conf.d").mkdir()
        self.conf = directory / "supervisord.conf"
        generated = subprocess.run(
            [sys.executable, "-m", "services", "deploy", "supervisor", str(chain_file),
             "--arroyo", ARROYO, "-o", str(directory / "conf.d" / "chain.conf")],
            capture_output=True, text=True, timeout=30)
        assert generated.returncode == 0, generated.stderr
        self.output = open(directory / "supervisord.out", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([*SUPERVISORD, "-n", "-c", str(self.conf)],
                                        stdout=self.output, stderr=subprocess.STDOUT)
        self.socket_url = f"unix://{directory}/supervisor.sock"
        self.pids: set[int] = set()
        wait_for(self._up, 15, "supervisord to answer")

    @property
    def rpc(self):
        """supervisord's XML-RPC interface (a new connection each time: one that failed
        cannot be reused)."""
        return _namespace(self.socket_url, "supervisor")

    def rpc_namespace(self, name: str) -> Any:
        """Another XML-RPC namespace of supervisord's (a plug-in's, e.g. ``arroyo``)."""
        return _namespace(self.socket_url, name)

    def _up(self) -> bool:
        assert self.process.poll() is None, (self.conf.parent / "supervisord.out").read_text()
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except OSError:
            return False

    def info(self, name: str) -> dict:
        info = self.rpc.getProcessInfo(name)
        if info["pid"]:
            self.pids.add(info["pid"])
        return info

    def state(self, name: str) -> str:
        return self.info(name)["statename"]

    def log(self, name: str) -> str:
        return Path(self.info(name)["stdout_logfile"]).read_text()

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SUPERVISORCTL, "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.rpc.shutdown()
            except (OSError, xmlrpc.client.Fault):
                self.process.terminate()
            wait_or_kill(self.process, 30)
        for pid in self.pids:  # only if supervisord died without stopping its children
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.output.close()


def _namespace(socket_url: str, name: str) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, socket_url)
    return getattr(xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport), name)
