"""Helpers for the deployment tests: chain files with free ports, polling with a deadline,
and reading a sink's ledger from its status socket or its last log line."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arroyo_core.transports.status import query_status
from services.processes import free_port


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


def chain_toml(name: str = "t", frames: int = 300, rate: float = 200.0, shape: str = "[64, 64]",
               drain_timeout: float = 3.0, operator: str = "passthrough",
               extra: str = "") -> tuple[str, dict[str, str]]:
    """A source -> operator -> sink chain on free loopback ports, and its status endpoints."""
    hop1, hop2 = free_port(), free_port()
    stats = {svc: f"tcp://127.0.0.1:{free_port()}" for svc in ("source", "operator", "sink")}
    text = f"""
name = "{name}"

[services.source]
role = "listener"
source = "simulated"
options = {{ shape = {shape}, frames = {frames}, rate = {rate} }}
out = "@tcp://127.0.0.1:{hop1}"
stats = "{stats['source']}"
drain_timeout = {drain_timeout}

[services.operator]
role = "operator"
operator = "{operator}"
in = ">tcp://{{source}}:{hop1}"
out = "@tcp://127.0.0.1:{hop2}"
stats = "{stats['operator']}"
drain_timeout = {drain_timeout}

[services.sink]
role = "publisher"
sink = "stats"
options = {{ interval = 0 }}
in = ">tcp://{{operator}}:{hop2}"
stats = "{stats['sink']}"
drain_timeout = {drain_timeout}
{extra}"""
    return text, stats


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
            return ast.literal_eval(text)
    raise AssertionError(f"no final ledger in the log:\n{log[-3000:]}")
