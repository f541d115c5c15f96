"""A service's ledger, read from its status socket while it runs or from the last line it
logged as it stopped (``... stopped; ledger: {...}``)."""

from __future__ import annotations

import json
from typing import Any

from services.processes import ServiceProcess
from services.status_server import query_status


def status(endpoint: str) -> dict[str, Any]:
    """The ledger the status socket at ``endpoint`` answers with."""
    return query_status(endpoint, timeout=5.0)


def sink_runs(endpoint: str) -> list[dict[str, Any]]:
    """The sink's per-run summaries (frames, frames_sent, lost, complete ...)."""
    return status(endpoint)["outputs"][0]["runs"]


def sink_frames(endpoint: str) -> int:
    """The frames the sink counted of its latest run (0 before the first)."""
    runs = sink_runs(endpoint)
    return runs[-1]["frames"] if runs else 0


def logged_ledger(log: str) -> dict[str, Any]:
    """The ledger a stopped service logged as its last word in ``log``."""
    for line in reversed(log.splitlines()):
        _, marker, text = line.partition(" stopped; ledger: ")
        if marker:
            return json.loads(text)
    raise AssertionError(f"no final ledger in the log:\n{log[-3000:]}")


def final_ledger(process: ServiceProcess) -> dict[str, Any]:
    """The ledger a stopped service process logged as its last word."""
    return logged_ledger(process.output())
