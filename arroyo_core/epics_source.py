"""The EPICS PV Access listener: an areaDetector NTNDArray channel as Arroyo runs.

::

    arroyo listener --source epics-pva -o channel=13SIM1:Pva1:Image --out '@tcp://*:5555'

pvapy (``pvaccess``) monitors the channel and calls back on a thread of its own with each
update; the callback takes the frame (a view on pvapy's buffer, no copy) and delivers it
there, as pvapy's own consumers process it: a hand-off to another thread would cost a
thread switch per frame (and keep pvapy's buffer one frame longer). When the runtime's
queue is full the callback waits, so the server's monitor queue fills and it drops updates,
which show as gaps in ``uniqueId``. :meth:`PvaListener.start` starts the monitor and ends
the run when frames stop.

A channel has no runs, so the listener makes them: a run starts with the first frame and
ends (a Stop) when no frame came for ``idle_timeout`` seconds, when the channel
disconnected (seen once frames stop: the IOC went away; pvapy reconnects when it is back),
when ``uniqueId`` goes back (the detector restarted its count) or when the dtype or shape
changes. Each frame is one
Event with one array, ``image``, and metadata::

    run, frame      the run's id; uniqueId minus the run's first uniqueId
    uniqueId        the detector's frame number
    timestamp       the frame's timeStamp (Unix seconds)
    attributes      {name: value} of the NTNDArray's scalar and string attributes

Gaps in ``uniqueId`` are counted in this listener's ledger (``missing``) and, since
``frame`` follows it, by every ledger downstream. The first update of a monitor is the
channel's current value: an NTNDArray without dimensions (no frame yet) is skipped,
counted as ``empty``.

EPICS finds a channel by UDP search: set ``EPICS_PVA_ADDR_LIST`` (and
``EPICS_PVA_AUTO_ADDR_LIST=NO``) where broadcasts do not reach the IOC.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from .components import Deliver, Listener
from .errors import ConfigError, DecodeError
from .memory import keep_freed_blocks
from .message import Event
from .ntndarray import read_frame
from .numbered_runs import NumberedRuns, Run
from .status import LinkStatus

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often the loop looks at its stop flag and its idle time
PROVIDERS = ("pva", "ca")


class PvaListener(Listener):
    """Monitors an areaDetector NTNDArray channel and delivers one Event per frame.

    Parameters
    ----------
    channel
        The PV's name, e.g. ``13SIM1:Pva1:Image``.
    provider
        ``pva`` (PV Access, default) or ``ca`` (Channel Access).
    idle_timeout
        Seconds without a frame after which the run ends (a Stop).
    server_queue
        The monitor's queue on the server (``record[queueSize=N]``); 0 keeps the server's
        default.
    """

    requires = {"pvaccess": "arroyo-stream[epics]"}

    def __init__(self, channel: str, provider: str = "pva", idle_timeout: float = 10.0,
                 server_queue: int = 0) -> None:
        if not isinstance(channel, str) or not channel:
            raise ConfigError(f"option channel: expected a PV name, got {channel!r}")
        if provider not in PROVIDERS:
            raise ConfigError(f"option provider: {provider!r} is not one of {list(PROVIDERS)}")
        self.channel_name, self.provider = channel, provider
        self.idle_timeout = float(idle_timeout)
        if not self.idle_timeout > 0:
            raise ConfigError(f"option idle_timeout: expected seconds > 0, got {idle_timeout!r}")
        self.server_queue = int(server_queue)
        # pvapy's thread delivers; start()'s ends a run that went quiet: one at a time
        self.lock = threading.Lock()
        self.deliver: Deliver | None = None  # set by start(); None again once it ends
        self.heard = time.monotonic()
        link = f"input epics-pva {channel}"
        self.numbered = NumberedRuns(link, channel, "frames", "frames changed")
        self.ledger = self.numbered.ledger
        self.updates = self.empty = 0
        self.busy = 0  # callbacks under way
        self.closed = self.monitoring = False
        self.channel: Any = None

    def open(self) -> None:
        import pvaccess as pva

        keep_freed_blocks()  # pvapy allocates a buffer per frame (arroyo_core.memory)

        self.channel = pva.Channel(self.channel_name,
                                   pva.PVA if self.provider == "pva" else pva.CA)
        # (no connection callback: pvapy 5.6 may call it from startMonitor without the
        # GIL, which aborts the process; start() asks isConnected() when frames stop)
        self.channel.subscribe("arroyo", self._update)

    def _update(self, pv: Any) -> None:
        """pvapy's thread: read the frame and deliver it (waiting while the runtime's
        queue is full)."""
        self.busy += 1  # (one pvapy thread calls back: no lock needed)
        try:
            self.updates += 1
            self.heard = time.monotonic()
            try:
                array, meta = read_frame(pv)
            except DecodeError as exc:
                self.ledger.reject(exc.reason, str(exc))
                return
            except Exception as exc:  # a structure that is not an NTNDArray at all
                self.ledger.reject("structure", f"not an NTNDArray ({type(exc).__name__}: "
                                   f"{exc})")
                return
            if array is None:
                self.empty += 1
                return
            with self.lock:
                if self.deliver is not None:  # (None: start() has ended, or not begun)
                    self._frame(array, meta, self.deliver)
        finally:
            self.busy -= 1

    def start(self, deliver: Deliver) -> None:
        self.deliver = deliver
        request = (f"record[queueSize={self.server_queue}]field()" if self.server_queue
                   else "field()")
        self.channel.startMonitor(request)
        self.monitoring = True
        while not self.stop_requested.wait(POLL_S):
            with self.lock:
                if self.numbered.run is None:
                    continue
                if not self.channel.isConnected():
                    self.numbered.end(deliver, "disconnected")  # pvapy reconnects
                elif time.monotonic() - self.heard > self.idle_timeout:
                    self.numbered.end(deliver, "idle")
        with self.lock:  # a callback under way finishes its frame first
            self.deliver = None
            if self.numbered.run is not None:
                self.numbered.end(deliver, "stopped")

    def _frame(self, array: np.ndarray, meta: dict[str, Any], deliver: Deliver) -> None:
        def start(run: Run) -> dict[str, Any]:
            return {"run": run.id, "source": "epics-pva", "channel": self.channel_name,
                    "shape": list(array.shape), "dtype": array.dtype.str,
                    "first_unique_id": run.first, "started": time.time()}
        unique_id = meta["uniqueId"]
        run = self.numbered.enter(unique_id, (array.dtype, array.shape), deliver, start)
        if run is not None:
            meta["run"], meta["frame"] = run.id, unique_id - run.first
            self.numbered.deliver(deliver, Event(meta, {"image": array}))

    def close(self) -> None:
        if self.channel is not None and not self.closed:
            # pvapy 5.6 aborts the process if a callback is unsubscribed while it runs, or
            # runs after: let a callback under way return, stop the monitor, and keep the
            # subscription (and the channel) for the process's life
            self.closed = True
            self.stop_requested.set()
            self._settle()
            if self.monitoring:
                self.channel.stopMonitor()
                self._settle()

    def _settle(self) -> None:
        """Wait (at most 2 s) until no callback runs."""
        deadline = time.monotonic() + 2.0
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.01)

    def status(self) -> LinkStatus:
        record = self.ledger.status(address=self.channel_name, kind="source",
                                    scheme="epics-pva",
                                    run_ledger=self.numbered.runs.status())
        return record.with_transport({"provider": self.provider, "updates": self.updates,
                                      "empty": self.empty})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
