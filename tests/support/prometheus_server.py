"""A real Prometheus server (Debian's ``prometheus``) started by a test: its own config,
a private port and its data in a temporary directory; queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from services.processes import free_port
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for, wait_or_kill


def require_prometheus() -> str:
    path = shutil.which("prometheus")
    skip_unless(path is not None, "needs the prometheus server (apt-get install prometheus)")
    assert path is not None
    return path


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 with ``config`` (a scrape config's text), its storage in
    ``directory``; :meth:`query` runs an instant PromQL query."""

    def __init__(self, directory: Path, config: str) -> None:
        self.directory = directory
        self.port = free_port()
        (directory / "prometheus.yml").write_text(config)
        self.log = open(directory / "prometheus.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [require_prometheus(), f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 30, "prometheus to be ready")

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
            return reply.read()  # type: ignore[no-any-return]

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.output()
        try:
            self._get("/-/ready")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query: ``[{"metric": {...}, "value": [t, v]}]``."""
        reply = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql})))
        assert reply["status"] == "success", reply
        return reply["data"]["result"]  # type: ignore[no-any-return]

    def targets(self) -> list[dict[str, Any]]:
        return json.loads(self._get("/api/v1/targets"))["data"]["activeTargets"]  # type: ignore[no-any-return]

    def output(self) -> str:
        self.log.flush()
        return (self.directory / "prometheus.log").read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            wait_or_kill(self.process, 10)
        self.log.close()
