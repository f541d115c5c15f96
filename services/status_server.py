"""A small socket per service that answers ``arroyo status`` with the service's ledger
(msgpack), so it can show which hop lost which messages.

It answers one request only, the bytes ``status`` sent by a REQ socket; anything else is
dropped unanswered, counted and logged once. A request frame over
:data:`MAX_REQUEST_BYTES` is never read: libzmq closes that connection. A socket of the
wrong type or another security mechanism never completes a handshake: libzmq reports a
failed handshake, or (when the other side hangs up first) only a closed connection. The
counts (requests refused, handshakes, closed and refused connections) are in the answer,
under ``status_socket``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import zmq

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError
from arroyo_core.transports.zmq.connections import ConnectionTracker
from arroyo_core.transports.zmq.sockets import bound_address, open_socket, zmq_address

log = logging.getLogger(__name__)

REQUEST = b"status"
MAX_REQUEST_BYTES = 64  # the socket's MAXMSGSIZE: a longer frame closes its connection


def _plain(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)


def status_address(endpoint: str, section: str) -> Address:
    """The address the status socket of service ``section`` binds, checked (a ConfigError
    names the service and the key)."""
    try:
        address = Address.parse(endpoint, bind_by_default=True)
        if address.scheme not in ("tcp", "ipc"):
            raise ConfigError(f"{endpoint!r}: a status socket is ZeroMQ, on a tcp:// or "
                              "ipc:// address")
        zmq_address(address)
    except ConfigError as exc:
        raise ConfigError(f"[{section}] status: {exc}") from None
    return address


class StatusServer:
    """Serves ``stats()`` on ``endpoint`` from a daemon thread until :meth:`close`;
    ``bound`` is the address it listens at, a wildcard port resolved (None if it
    connects)."""

    def __init__(self, endpoint: str, stats: Callable[[], dict[str, Any]], name: str) -> None:
        self.endpoint = status_address(endpoint, name)
        self.stats = stats
        self.name = name
        self._closing = threading.Event()
        self.refused = 0  # requests not understood, dropped unanswered
        # (a poller connects for each request: its comings and goings are not news)
        self.tracker = ConnectionTracker(f"[{name}] status", peers_log_level=logging.DEBUG)
        self._socket = open_socket(zmq.ROUTER, self.endpoint,
                                   {zmq.LINGER: 0, zmq.MAXMSGSIZE: MAX_REQUEST_BYTES},
                                   "status", tracker=self.tracker)
        self.bound = bound_address(self._socket) if self.endpoint.bind else None
        self._thread = threading.Thread(target=self._serve, name="arroyo-status", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        socket = self._socket
        while not self._closing.is_set():
            if not socket.poll(100):
                continue
            frames = socket.recv_multipart()
            if frames[1:] != [b"", REQUEST]:  # [peer id, REQ's delimiter, request]
                self._refuse(frames)
                continue
            try:
                reply = {**self.stats(), "name": self.name, "status_socket": self.counts()}
            except Exception as exc:  # a racing counter must not kill the status thread
                reply = {"name": self.name, "error": repr(exc)}
            socket.send_multipart([frames[0], b"", msgpack.packb(reply, default=_plain)])
        self.tracker.stop(socket)
        socket.close(linger=0)

    def _refuse(self, frames: list[bytes]) -> None:
        self.refused += 1
        if self.refused == 1:
            log.warning("[%s] status: dropped a request it does not understand (%d frame(s), "
                        "%d bytes; it answers only %r from a REQ socket); further ones are "
                        "only counted", self.name, len(frames) - 1,
                        sum(map(len, frames[1:])), REQUEST.decode())

    def counts(self) -> dict[str, Any]:
        """The status socket's own refusals: requests dropped, handshakes refused."""
        return {"requests_refused": self.refused, **self.tracker.stats()}

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)


def status_endpoints(words: Sequence[str]) -> list[str]:
    """The status sockets ``arroyo status WORD...`` asks: each word is one's address (e.g.
    ``tcp://127.0.0.1:6000``) or a chain file (each of its services that has one, from the
    host it runs on); a ConfigError says what was expected instead."""
    endpoints = []
    for word in words:
        if word.endswith((".toml", ".yaml", ".yml")):
            from .chain import load_chain
            from .deploy import status_address as reached_at

            chain = load_chain(word)
            found = [reached_at(chain, name, replica) for name in chain.order()
                     for replica in (range(chain.services[name].replicas)
                                     if chain.services[name].replicas > 1 else [None])]
            if not any(found):
                raise ConfigError(f"{word}: no service of chain {chain.name!r} has a status "
                                  "socket (status = ADDRESS)")
            endpoints += [address for address in found if address]
            continue
        try:
            address = Address.parse(word, bind_by_default=False)
            if address.scheme not in ("tcp", "ipc"):
                raise ConfigError("not tcp:// or ipc://")
        except ConfigError:
            hint = f"; did you mean tcp://127.0.0.1:{word}?" if word.isdigit() else ""
            raise ConfigError(f"{word!r} is not a status address: expected a service's status "
                              f"address such as tcp://127.0.0.1:6000, or a chain file"
                              f"{hint}") from None
        endpoints.append(word)
    return endpoints


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
