"""Helpers for the deployment tests: chain files with free ports, polling with a deadline
(harness.wait_for), a real supervisord running a generated chain, and reading a sink's
ledger from its status socket or its last log line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

from harness import wait_for, wait_or_kill

from services.processes import free_port
from services.status_server import query_status

ROOT = Path(__file__).resolve().parents[2]
ARROYO = f"{sys.executable} -m services"  # how supervisord starts this checkout's arroyo
# the supervisor package's own commands, whether or not its scripts are on PATH
SUPERVISORD = [sys.executable, "-m", "supervisor.supervisord"]
SUPERVISORCTL = [sys.executable, "-m", "supervisor.supervisorctl"]


def chain_toml(name: str = "t", frames: int = 300, rate: float = 200.0, shape: str = "[64, 64]",
               drain_timeout: float = 3.0, operator: str = "passthrough",
               source_options: str = "", sink: str = "stats", sink_options: str = "interval = 0",
               extra: str = "") -> tuple[str, dict[str, str]]:
    """A source -> operator -> sink chain on free loopback ports, and its status endpoints.

    ``source_options`` are added to the simulated source's options, ``sink_options`` are the
    sink's (TOML inline-table entries); ``extra`` is appended (e.g. ``program`` tables).
    """
    hop1, hop2 = free_port(), free_port()
    stats = {svc: f"tcp://127.0.0.1:{free_port()}" for svc in ("source", "operator", "sink")}
    more = f", {source_options}" if source_options else ""
    text = f"""
name = "{name}"

[services.source]
role = "listener"
source = "simulated"
options = {{ shape = {shape}, frames = {frames}, rate = {rate}{more} }}
out = "@tcp://127.0.0.1:{hop1}"
status = "{stats['source']}"
drain_timeout = {drain_timeout}

[services.operator]
role = "operator"
operator = "{operator}"
in = ">tcp://{{source}}:{hop1}"
out = "@tcp://127.0.0.1:{hop2}"
status = "{stats['operator']}"
drain_timeout = {drain_timeout}

[services.sink]
role = "publisher"
sink = "{sink}"
options = {{ {sink_options} }}
in = ">tcp://{{operator}}:{hop2}"
status = "{stats['sink']}"
drain_timeout = {drain_timeout}
{extra}"""
    return text, stats


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


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sink_runs(endpoint: str) -> list[dict[str, Any]]:
    """The sink's per-run summaries (frames, frames_sent, lost, complete ...)."""
    return query_status(endpoint, timeout=5.0)["outputs"][0]["runs"]


def sink_frames(endpoint: str) -> int:
    runs = sink_runs(endpoint)
    return runs[-1]["frames"] if runs else 0


def logged_ledger(log: str) -> dict[str, Any]:
    """The ledger a stopped service logged as its last word ('... stopped; ledger: {...}')."""
    for line in reversed(log.splitlines()):
        _, marker, text = line.partition(" stopped; ledger: ")
        if marker:
            return json.loads(text)
    raise AssertionError(f"no final ledger in the log:\n{log[-3000:]}")
