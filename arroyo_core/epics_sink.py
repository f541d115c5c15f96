"""The EPICS PV Access publisher: Arroyo's Events served as an areaDetector NTNDArray
channel, so EPICS viewers (CSS/Phoebus, ImageJ's EPICS plug-in) and pvapy's
``pvapy-hpc-consumer`` read a chain's output.

::

    arroyo publisher --in '>tcp://host:5555' --sink epics-pva -o channel=ARROYO:image

pvapy's ``PvaServer`` serves the channel on the port ``EPICS_PVAS_SERVER_PORT`` (or
``EPICS_PVA_SERVER_PORT``, default 5075) and answers searches on
``EPICS_PVA_BROADCAST_PORT``. PV Access keeps only the newest value for a client that
falls behind: a slow client sees gaps in ``uniqueId``, which is what a monitor with a
server queue (``record[queueSize=N]``) is for.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .components import Publisher
from .errors import ConfigError
from .ledger import OutputLedger
from .message import Event, Message
from .ntndarray import FIELD_OF, write_frame
from .status import LinkStatus

log = logging.getLogger(__name__)


class PvaPublisher(Publisher):
    """Serves one array of each Event as the NTNDArray channel ``channel``.

    Each Event becomes one update: its array (``array``, or the Event's only array),
    ``uniqueId`` from the Event's ``frame`` plus 1 (areaDetector counts from 1; a counter
    if the Event has none), and the Event's scalar and string metadata as attributes.
    Start and Stop have no NTNDArray form and are only counted. An Event without that
    array, or whose dtype NTNDArray has no field for, is dropped and counted.

    Parameters
    ----------
    channel
        The PV name to serve.
    array
        Which of each Event's arrays to serve; by default the only one.
    """

    requires = {"pvaccess": "arroyo-stream[epics]"}

    def __init__(self, channel: str, array: str | None = None) -> None:
        if not isinstance(channel, str) or not channel:
            raise ConfigError(f"option channel: expected a PV name, got {channel!r}")
        self.channel = channel
        self.array = array
        self.ledger = OutputLedger(f"output epics-pva {channel}")
        self.server: Any = None
        self.counted = 0  # Events without a frame number: their uniqueId
        self.marks = 0  # Starts and Stops, which have no NTNDArray form

    def open(self) -> None:
        import pvaccess as pva

        self.server = pva.PvaServer()
        self.server.addRecord(self.channel, pva.NtNdArray())

    def publish(self, message: Message) -> None:
        if not isinstance(message, Event):
            self.marks += 1
            return
        array = self._array(message)
        if array is None:
            return
        frame = message.meta.get("frame")
        if type(frame) is int:
            unique_id = frame + 1
        else:
            self.counted += 1
            unique_id = self.counted
        attributes = {key: value for key, value in message.meta.items()
                      if isinstance(value, bool | int | float | str)}
        self.server.update(self.channel, write_frame(array, unique_id, time.time(),
                                                     attributes))
        self.ledger.sent += 1

    def _array(self, event: Event) -> np.ndarray | None:
        if self.array is not None:
            value = event.payload.get(self.array)
        elif len(event.payload) == 1:
            (value,) = event.payload.values()
        else:
            self.ledger.drop("which array: give the option array")
            return None
        if not isinstance(value, np.ndarray):
            self.ledger.drop("no such array" if value is None else "not an array")
            return None
        if value.dtype.newbyteorder("=") not in FIELD_OF:
            self.ledger.drop("dtype has no NTNDArray field")
            return None
        return value

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def status(self) -> LinkStatus:
        record = self.ledger.status(address=self.channel, kind="sink", scheme="epics-pva")
        return record.with_transport({"starts_and_stops": self.marks})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
