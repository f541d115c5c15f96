"""A small REP socket per service that answers any request with the service's ledger
(msgpack), so ``arroyo status`` can show which hop lost which messages."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from arroyo_core.address import Address
from arroyo_core.transports.zmq.sockets import open_socket, zmq_address

log = logging.getLogger(__name__)


def _plain(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)


class StatusServer:
    """Serves ``stats()`` on ``endpoint`` from a daemon thread until :meth:`close`."""

    def __init__(self, endpoint: str, stats: Callable[[], dict[str, Any]], name: str) -> None:
        self.endpoint = Address.parse(endpoint, bind_by_default=True)
        zmq_address(self.endpoint)
        self.stats = stats
        self.name = name
        self._closing = threading.Event()
        self._socket = open_socket(zmq.REP, self.endpoint, {zmq.LINGER: 0}, "status")
        self._thread = threading.Thread(target=self._serve, name="arroyo-status", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        socket = self._socket
        while not self._closing.is_set():
            if not socket.poll(100):
                continue
            socket.recv()
            try:
                reply = {**self.stats(), "name": self.name}
            except Exception as exc:  # a racing counter must not kill the status thread
                reply = {"name": self.name, "error": repr(exc)}
            socket.send(msgpack.packb(reply, default=_plain))
        socket.close(linger=0)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)


def query_status(endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
    """Ask the status socket at ``endpoint`` for its ledger; raise TimeoutError if silent."""
    target = Address.parse(endpoint, bind_by_default=False)
    if target.bind or target.host == "*":
        target = Address(target.text.replace("*", "127.0.0.1"), False)
    socket = open_socket(zmq.REQ, target, {zmq.LINGER: 0}, "status query")
    try:
        socket.send(b"status")
        if not socket.poll(int(timeout * 1000)):
            raise TimeoutError(f"no status answer from {target.text} in {timeout} s")
        return msgpack.unpackb(socket.recv(), raw=False)
    finally:
        socket.close(linger=0)
