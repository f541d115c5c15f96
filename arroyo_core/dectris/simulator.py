"""A stand-in DECTRIS detector: sends series of stream v2 messages over ZeroMQ PUSH, as a
detector control unit does, written from DECTRIS's public description of stream v2.

Images are Poisson noise (mean 2, as a weakly lit detector sees) drawn from a generator
seeded by ``(seed, image_id, channel)``, so a test can make the same image again with
:func:`simulated_image` and compare. :func:`malformed_messages` gives one message for each
way a stream can be wrong, with the reason a listener should count it under.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import zmq

from ..address import Address
from ..errors import ConfigError
from .cbor import ROW_MAJOR, encode, encode_array
from .compression import ALGORITHMS

TIME_BASE = 100_000_000  # ticks per second of the rationals (real_time, start_time ...)
SEND_WAIT_MS = 100  # how often a send that no receiver takes looks at its stop flag


def simulated_image(seed: int, image_id: int, channel: int, shape: Iterable[int],
                    dtype: str) -> np.ndarray:
    """The image the simulator sends as ``image_id`` in channel number ``channel``."""
    rng = np.random.default_rng((seed, image_id, channel))
    return rng.poisson(2.0, tuple(shape)).astype(dtype)


class DectrisSimulator:
    """Sends stream v2 series: ``start``, ``images`` ``image`` messages, ``end``.

    Parameters
    ----------
    address
        Where to bind the PUSH socket (``@tcp://*:31001``, as a detector does), or connect.
    images, shape, dtype
        Images per series and each channel's array.
    channels
        Thresholds per image: ``threshold_1`` ... ``threshold_N``.
    compression
        ``bslz4``, ``lz4`` or ``none``.
    rate
        Images per second; 0 as fast as the receivers take them.
    seed
        Of the images (see :func:`simulated_image`).
    """

    def __init__(self, address: str = "@tcp://*:31001", images: int = 10,
                 shape: Iterable[int] = (512, 512), dtype: str = "uint16", channels: int = 2,
                 compression: str = "bslz4", rate: float = 0.0, seed: int = 0,
                 hwm: int = 64) -> None:
        self.address = Address.parse(address, bind_by_default=True)
        if compression not in (*ALGORITHMS, "none"):
            raise ConfigError(f"compression: expected one of {(*ALGORITHMS, 'none')}, got "
                              f"{compression!r}")
        self.images, self.shape, self.dtype = int(images), tuple(shape), np.dtype(dtype).str
        self.channels = [f"threshold_{n + 1}" for n in range(int(channels))]
        self.compression, self.rate, self.seed, self.hwm = compression, rate, seed, hwm
        self.socket: zmq.Socket | None = None
        self.series_id = 0
        self.sent = 0

    def open(self) -> str:
        """Bind (or connect) the PUSH socket; return the endpoint it is bound to."""
        socket: zmq.Socket = zmq.Context.instance().socket(zmq.PUSH)
        socket.sndhwm = self.hwm
        socket.sndtimeo = SEND_WAIT_MS
        socket.linger = 0
        if self.address.bind:
            socket.bind(self.address.text)
            endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            socket.connect(self.address.text)
            endpoint = self.address.text
        self.socket = socket
        return endpoint

    def send(self, data: bytes, stop: threading.Event | None = None) -> bool:
        """Send one message, waiting while no receiver takes it; False if ``stop`` was
        set first (a wait without end would keep a stopping detector from exiting)."""
        assert self.socket is not None, "open() first"
        while True:
            try:
                self.socket.send(data)
            except zmq.Again:
                if stop is not None and stop.is_set():
                    return False
                continue
            self.sent += 1
            return True

    def series(self, stop: threading.Event | None = None,
               bad: Iterable[bytes] = ()) -> str:
        """Send one series (its images paced at ``rate``); return its unique id. ``bad``
        messages go after the first image; ``stop`` ends the series early, without ``end``
        (as a detector that goes away does)."""
        self.series_id += 1
        uid = uuid.uuid4().hex.upper()
        armed = datetime.datetime.now(datetime.UTC)
        common = {"series_id": self.series_id, "series_unique_id": uid}
        if not self.send(encode(self.start_message(common, armed)), stop):
            return uid
        began = time.monotonic()
        for image in range(self.images):
            if self.rate:
                delay = began + image / self.rate - time.monotonic()
                if delay > 0 and stop is not None and stop.wait(delay):
                    return uid
                if delay > 0 and stop is None:
                    time.sleep(delay)
            if stop is not None and stop.is_set():
                return uid
            if not self.send(encode(self.image_message(common, armed, image)), stop):
                return uid
            if image == 0:
                for data in bad:
                    self.send(data, stop)
        self.send(encode({"type": "end", **common}), stop)
        return uid

    def start_message(self, common: dict[str, Any], armed: datetime.datetime) -> dict[str, Any]:
        height, width = self.shape[-2:] if len(self.shape) > 1 else (1, self.shape[0])
        mask = np.zeros(self.shape, np.uint32)
        return {"type": "start", **common, "arm_date": armed, "channels": self.channels,
                "number_of_images": self.images, "image_size_x": width,
                "image_size_y": height, "count_time": 0.01, "frame_time": 0.01,
                "detector_description": "Arroyo simulated detector (stream v2)",
                "detector_serial_number": "SIM-0001", "incident_energy": 12_400.0,
                "beam_center_x": width / 2, "beam_center_y": height / 2,
                "threshold_energy": {name: 6_200.0 * (n + 1)
                                     for n, name in enumerate(self.channels)},
                "pixel_mask_enabled": True,
                "pixel_mask": {name: encode_array(mask, self.compression)
                               for name in self.channels},
                "goniometer": {"omega": {"start": 0.0, "increment": 0.1}},
                "user_data": {"simulated": True}}

    def image_message(self, common: dict[str, Any], armed: datetime.datetime,
                      image: int) -> dict[str, Any]:
        tick = TIME_BASE // 100
        data = {name: encode_array(simulated_image(self.seed, image, n, self.shape,
                                                   self.dtype), self.compression)
                for n, name in enumerate(self.channels)}
        return {"type": "image", **common, "image_id": image, "series_date": armed,
                "real_time": [tick, TIME_BASE], "start_time": [image * tick, TIME_BASE],
                "stop_time": [(image + 1) * tick, TIME_BASE], "user_data": None,
                "data": data}

    def close(self, linger: float = 5.0) -> None:
        """Close the socket, giving queued messages ``linger`` seconds to go (the process
        must terminate the context, or stay up, for them to go)."""
        if self.socket is not None:
            self.socket.close(linger=int(linger * 1000))
            self.socket = None


def malformed_messages(shape: Iterable[int] = (8, 8)) -> list[tuple[str, bytes]]:
    """One message of each kind a listener must reject, with the reason it counts it by."""
    import cbor2

    array = np.arange(int(np.prod(tuple(shape))), dtype=np.uint16).reshape(tuple(shape))
    good = {"type": "image", "series_id": 1, "series_unique_id": "BAD", "image_id": 0,
            "data": {"threshold_1": encode_array(array, "bslz4")}}
    corrupt = encode_array(array, "bslz4")
    blob = bytearray(corrupt.value[1].value.value[2])
    blob[12:16] = (2**31).to_bytes(4, "big")  # the first block says it is 2 GiB long
    corrupt.value[1].value.value[2] = bytes(blob)
    wrong_size = cbor2.CBORTag(ROW_MAJOR, [[3, 3], corrupt.value[1]])
    wrong_size.value[1] = encode_array(array, "none").value[1]
    return [
        ("cbor", b"\xff\x00 this is not CBOR"),
        ("cbor", encode(good)[:-7]),  # truncated
        ("message", encode(["a", "list", "not", "a", "map"])),
        ("message", encode({"type": "calibration", "series_id": 1})),
        ("compression", encode({**good, "data": {"threshold_1": corrupt}})),
        ("array", encode({**good, "data": {"threshold_1": wrong_size}})),
    ]
