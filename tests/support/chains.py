"""Chain files, as a user writes them, for `arroyo run`, `arroyo check` and supervisord."""

from __future__ import annotations

from pathlib import Path

from services.processes import free_port
from tests.support.addresses import IpcDirectory


def chain_toml(ipc: IpcDirectory, name: str = "t", frames: int = 300, rate: float = 200.0,
               shape: str = "[64, 64]", drain_timeout: float = 3.0,
               operator: str = "passthrough", source_options: str = "", sink: str = "stats",
               sink_options: str = "interval = 0", extra: str = "", tcp_status: bool = False,
               ) -> tuple[str, dict[str, str]]:
    """A source -> operator -> sink chain over loopback tcp, and its status endpoints
    (``ipc://`` paths from ``ipc``; tcp ports picked here with ``tcp_status``, for a test
    of the ports a chain leaves free).

    Each hop is a tcp port picked here, before any service runs: a chain file names the
    port that one service binds and the next connects to (``>tcp://{source}:PORT``), and
    all of a chain's services start at once (`arroyo run`, supervisord), so no service can
    pick it and tell the others. The status sockets are ``ipc://`` paths, which no other
    test can take and which stay the same across a supervised restart.

    ``source_options`` are added to the simulated source's options, ``sink_options`` are the
    sink's (TOML inline-table entries); ``extra`` is appended (e.g. ``program`` tables).
    """
    hop1, hop2 = free_port(), free_port()
    stats = {svc: f"tcp://127.0.0.1:{free_port()}" if tcp_status else ipc(f"{svc}.status")
             for svc in ("source", "operator", "sink")}
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


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pool_chain_toml(ipc: IpcDirectory, name: str = "p", replicas: int = 3, frames: int = 300,
                    rate: float = 0.0, shape: str = "[32, 32]", operator: str = "passthrough",
                    operator_options: str = "", worker_in: str = "", sink: str = "stats",
                    sink_options: str = "interval = 0", sink_in: str = "",
                    drain_timeout: float = 3.0, feed: str | None = None,
                    ) -> tuple[str, dict[str, str]]:
    """source -> a pool of ``replicas`` workers -> sink, over loopback tcp; and the status
    endpoints (``worker`` is worker 0's; worker K's is ``ipc(...)-K``, see services.chain).

    The source binds and the workers connect to it; the sink binds and the workers connect
    to it (a pool's workers cannot all bind one port). ``worker_in`` and ``sink_in`` are the
    workers' and the sink's ``in_options`` entries (TOML inline-table entries). With
    ``feed`` (a tcp address) there is no source service: the workers connect to ``feed``,
    where the test process dispatches.
    """
    hop1, hop2 = free_port(), free_port()
    stats = {svc: ipc(f"{svc}.status") for svc in ("source", "worker", "sink")}
    source = f"""
[services.source]
role = "listener"
source = "simulated"
options = {{ shape = {shape}, frames = {frames}, rate = {rate} }}
out = "@tcp://127.0.0.1:{hop1}"
status = "{stats['source']}"
drain_timeout = {drain_timeout}
""" if feed is None else ""
    text = f"""
name = "{name}"
external = {[feed] if feed else []}
{source}
[services.worker]
role = "operator"
operator = "{operator}"
options = {{ {operator_options} }}
replicas = {replicas}
in = "{'>' + feed if feed else f'>tcp://{{source}}:{hop1}'}"
in_options = {{ {worker_in} }}
out = ">tcp://{{sink}}:{hop2}"
status = "{stats['worker']}"
drain_timeout = {drain_timeout}

[services.sink]
role = "publisher"
sink = "{sink}"
options = {{ {sink_options} }}
in = "@tcp://127.0.0.1:{hop2}"
in_options = {{ {sink_in} }}
status = "{stats['sink']}"
drain_timeout = {drain_timeout}
"""
    return text, stats
