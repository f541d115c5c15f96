"""The ``dectris`` source: a DECTRIS detector's stream v2 (SIMPLON 1.8+) as Arroyo runs.

A detector control unit binds a ZeroMQ PUSH socket (port 31001) and sends one CBOR message
per ZeroMQ message: ``start`` when the series is armed, an ``image`` per exposure (every
channel, i.e. threshold, of it), ``end`` at disarm. This listener connects a PULL socket
to it and turns a series into a run::

    start {series_unique_id, ...}    ->  Start {run, series_id, frames, channels, shape, ...}
    image {image_id, data: {ch: a}}  ->  Event {run, frame=image_id, ...} payload {ch: a}
    end                              ->  Stop  {run, frames_sent, number_of_images, aborted}

A series that is cut off (the detector restarts, or another series starts, before its
``end``; or this service stops) ends with a Stop whose ``aborted`` is true. An image of a
series whose ``start`` this listener did not see (it joined mid-series) opens the run
with a Start that says ``joined``. Images are numbered per series in the ledger (the
series is the sender, ``image_id`` its sequence number), so images that never came show
as ``missing`` and repeats as ``duplicates``; a message that is not valid stream v2 is
counted as ``malformed`` by reason (:mod:`.cbor`), logged once, and the stream goes on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import zmq

from ..address import Address
from ..components import Deliver, Listener
from ..errors import ConfigError, DecodeError
from ..ledger import InputLedger
from ..memory import keep_freed_blocks
from ..message import Event, Start, Stop
from ..status import LinkStatus
from .cbor import Decoder, arrays_in, plain

log = logging.getLogger(__name__)

POLL_MS = 100  # how often the receive loop looks at its stop flag
INSTALL = "arroyo-stream[dectris]"
IMAGE_FIELDS = ("series_id", "real_time", "start_time", "stop_time", "series_date",
                "user_data")


class DectrisListener(Listener):
    """Receives a DECTRIS detector's stream v2 (CBOR over ZeroMQ PUSH/PULL).

    Each image becomes one Event whose payload holds one array per channel (threshold),
    named as the detector names them (``threshold_1``, ``threshold_2``, ``difference``),
    decompressed from ``bslz4`` or ``lz4``. Several listeners may connect to one detector:
    it deals the images out round-robin.

    Parameters
    ----------
    address
        The detector's stream endpoint: ``tcp://dcu:31001`` (connects; ``@tcp://*:31001``
        binds instead, for a sender that connects).
    threads
        Threads that decode (decompress) images side by side; Events still go on in the
        order their messages came. 1 decodes in the receiving thread.
    max_image_bytes
        A compressed array that says it decompresses to more is rejected (``size``).
    hwm
        Messages the socket may hold before the detector's sends wait.
    """

    requires = {"cbor2": INSTALL, "bitshuffle": INSTALL, "lz4": INSTALL}

    def __init__(self, address: str = "tcp://127.0.0.1:31001", threads: int = 1,
                 max_image_bytes: int = 1 << 30, hwm: int = 64) -> None:
        self.address = Address.parse(address, bind_by_default=False)
        if self.address.scheme not in ("tcp", "ipc", "inproc"):
            raise ConfigError(f"option address: a ZeroMQ address (tcp://, ipc://), got "
                              f"{address!r}")
        if threads < 1:
            raise ConfigError(f"option threads: expected 1 or more, got {threads!r}")
        self.threads = int(threads)
        self.hwm = int(hwm)
        self.decoder = Decoder(int(max_image_bytes))
        self.ledger = InputLedger(f"dectris {self.address.shown}")
        self.socket: zmq.Socket | None = None
        self.bound: str | None = None
        self.series: dict[str, Any] | None = None  # the open series: its id, images, ...
        self.series_seen = 0

    def open(self) -> None:
        keep_freed_blocks()  # libzmq and the decoder allocate a buffer per image
        socket: zmq.Socket = zmq.Context.instance().socket(zmq.PULL)
        socket.linger = 0
        socket.rcvhwm = self.hwm
        socket.reconnect_ivl, socket.reconnect_ivl_max = 100, 1000
        endpoint = self.address.text
        try:
            if self.address.bind:
                socket.bind(endpoint)
                self.bound = socket.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                socket.connect(endpoint)
        except zmq.ZMQError as exc:
            socket.close(linger=0)
            raise ConfigError(f"dectris: cannot {'bind' if self.address.bind else 'connect'} "
                              f"{endpoint}: {exc}") from None
        self.socket = socket

    def start(self, deliver: Deliver) -> None:
        assert self.socket is not None, "open() first"
        pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        pending: deque[Future] = deque()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while not self.stop_requested.is_set():
                if not poller.poll(POLL_MS if not pending else 0):
                    if pending:  # nothing new: deliver the oldest (the others decode on)
                        self._handle(pending.popleft(), deliver)
                    continue
                frame = self.socket.recv(copy=False)
                if pool is None:
                    self._handle(self._decode(frame.buffer), deliver)
                    continue
                pending.append(pool.submit(self._decode, frame.buffer))
                while len(pending) > self.threads or (pending and pending[0].done()):
                    self._handle(pending.popleft(), deliver)
            while pending:
                self._handle(pending.popleft(), deliver)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            self._end_series(deliver, "the listener stopped")

    def _decode(self, buffer: Any) -> dict[str, Any] | DecodeError:
        try:
            return self.decoder.decode(buffer)
        except DecodeError as exc:
            return exc

    def _handle(self, result: Any, deliver: Deliver) -> None:
        if isinstance(result, Future):
            result = result.result()
        if isinstance(result, DecodeError):
            self.ledger.reject(result.reason, str(result))
            return
        try:
            getattr(self, f"_on_{result['type']}")(result, deliver)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.ledger.reject("message", f"{result.get('type')} message: "
                                          f"{type(exc).__name__}: {exc}")

    def _on_start(self, message: dict[str, Any], deliver: Deliver) -> None:
        uid = _series_id(message)
        self._end_series(deliver, f"series {uid} started before its end")
        meta = plain(message)
        del meta["type"]
        omitted = arrays_in(message)
        meta.update(run=uid, source="dectris", started=time.time(),
                    frames=message.get("number_of_images"), omitted_arrays=omitted)
        if "image_size_x" in message and "image_size_y" in message:
            meta["shape"] = [message["image_size_y"], message["image_size_x"]]
        self._open_series(uid, message, deliver, meta)

    def _on_image(self, message: dict[str, Any], deliver: Deliver) -> None:
        uid, image = _series_id(message), message["image_id"]
        data = message["data"]
        if not isinstance(image, int) or not isinstance(data, Mapping) or not all(
                hasattr(array, "dtype") for array in data.values()):
            raise TypeError("image_id must be an integer and data a map of channel arrays")
        if self.series is None or self.series["run"] != uid:
            self._end_series(deliver, f"images of series {uid} came before its end")
            self._open_series(uid, message, deliver, {
                "run": uid, "source": "dectris", "series_id": message.get("series_id"),
                "joined": True, "started": time.time(), "channels": list(data)})
        if not self.ledger.observe(uid, image):
            return  # a duplicate: counted, not passed on
        series = self.series
        assert series is not None
        series["next"] = max(series["next"], image + 1)
        meta = {key: plain(message[key]) for key in IMAGE_FIELDS if key in message}
        meta.update(run=uid, frame=image)
        deliver(Event(meta, dict(data)))

    def _on_end(self, message: dict[str, Any], deliver: Deliver) -> None:
        uid = _series_id(message)
        if self.series is None or self.series["run"] != uid:
            self.ledger.reject("message", f"end of series {uid}, which is not open")
            return
        self._end_series(deliver, None)

    def _open_series(self, uid: str, message: dict[str, Any], deliver: Deliver,
                     meta: dict[str, Any]) -> None:
        self.series = {"run": uid, "next": 0, "images": message.get("number_of_images"),
                       "began": time.monotonic()}
        self.series_seen += 1
        deliver(Start(meta))

    def _end_series(self, deliver: Deliver, cut: str | None) -> None:
        """Stop the open series, if any; ``cut`` says why it ended without its ``end``."""
        series, self.series = self.series, None
        if series is None:
            return
        sent, expected = series["next"], series["images"]
        aborted = cut is not None or (isinstance(expected, int) and sent < expected)
        if cut is not None:
            log.warning("dectris: series %s ended without its end message: %s",
                        series["run"], cut)
        deliver(Stop({"run": series["run"], "frames_sent": sent, "number_of_images": expected,
                      "aborted": aborted, "seconds": time.monotonic() - series["began"],
                      **({"cut": cut} if cut else {})}))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def status(self) -> LinkStatus:
        return self.ledger.status(kind="source", address=self.address.shown,
                                  bound=self.bound, scheme=self.address.scheme,
                                  pattern="pull", transport={"series": self.series_seen})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _series_id(message: dict[str, Any]) -> str:
    uid = message.get("series_unique_id")
    if uid is None:
        uid = message["series_id"]  # a KeyError: neither, so not a valid message
    return str(uid)
