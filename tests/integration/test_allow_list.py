"""A CURVE server's allow-list follows its files while the server runs: a key added lets its
client in, a key removed closes that client's connection and refuses it from then on, each
change logged; no restart. Real sockets over loopback tcp, in one process."""

from __future__ import annotations

import logging
import shutil

import pytest
import zmq

from arroyo_core.address import Address
from arroyo_core.transports.zmq.connections import ConnectionTracker
from arroyo_core.transports.zmq.curve import CurveLink, generate_key_pair
from arroyo_core.transports.zmq.reasons import AUTH_REASON
from arroyo_core.transports.zmq.sockets import open_socket
from services.processes import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(tmp_path):
    for name in ("server", "a", "b"):
        generate_key_pair(name, tmp_path / "keys")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(tmp_path / "keys/a.key", allowed)
    return tmp_path / "keys", allowed


@pytest.fixture
def sockets():
    opened: list[tuple[zmq.Socket, ConnectionTracker, CurveLink]] = []

    def open_(address: str, kind: int, curve: CurveLink) -> ConnectionTracker:
        tracker = ConnectionTracker(address)
        parsed = Address.parse(address, bind_by_default=False)
        socket = open_socket(kind, parsed, {zmq.LINGER: 0, zmq.RECONNECT_IVL: 100}, address,
                             curve=curve, tracker=tracker)
        opened.append((socket, tracker, curve))
        if not parsed.bind:  # what a listener does while idle: connect again if refused
            tracker.idle = lambda: tracker.reconnect_dropped(socket, parsed.text)
        return tracker

    yield open_
    for socket, tracker, curve in opened:
        tracker.stop(socket)
        socket.close(linger=0)
        curve.release()


def test_keys_added_and_removed_take_effect_without_a_restart(keys, sockets, caplog):
    directory, allowed = keys
    caplog.set_level(logging.INFO)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = sockets("@" + endpoint, zmq.PUSH, CurveLink.from_options(
        "server", endpoint, True, str(directory / "server.key_secret"), allow=str(allowed)))

    def client(name: str) -> ConnectionTracker:
        return sockets(">" + endpoint, zmq.PULL, CurveLink.from_options(
            name, endpoint, False, str(directory / f"{name}.key_secret"),
            str(directory / "server.key")))

    a, b = client("a"), client("b")
    wait_for(lambda: a.count == 1, 10, "a, on the list, to connect")
    wait_for(lambda: b.refused[AUTH_REASON] >= 1, 10, "b, not on the list, to be refused")
    assert b.count == 0

    shutil.copy(directory / "b.key", allowed)  # b's key added, the server untouched
    wait_for(lambda: b.idle() or b.count == 1, 15, "b to be let in once its key is listed")
    assert "allow-list changed, now 2 key(s)" in caplog.text

    refused_before = a.refused[AUTH_REASON]
    (allowed / "a.key").unlink()  # a's key removed: its open connection must close
    wait_for(lambda: a.disconnects >= 1, 15, "a's connection to be closed")
    wait_for(lambda: a.idle() or a.refused[AUTH_REASON] > refused_before, 15,
             "a to be refused again")
    assert "closed 1 connection(s)" in caplog.text or "closed 2 connection(s)" in caplog.text
    assert a.count == 0
    # b, on the same host, was cut too (connections are closed by host) and comes back
    wait_for(lambda: b.idle() or b.count == 1, 15, "b to stay in")
    assert server.refused[AUTH_REASON] >= 2  # b once, a after its removal


def test_an_unusable_change_keeps_the_old_list(keys, sockets, caplog):
    directory, allowed = keys
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sockets("@" + endpoint, zmq.PUSH, CurveLink.from_options(
        "server", endpoint, True, str(directory / "server.key_secret"), allow=str(allowed)))
    (allowed / "a.key").unlink()  # an empty list would let nobody in: refused, logged
    (allowed / "broken.key").write_text("not a certificate")
    wait_for(lambda: "the allow-list changed but cannot be used" in caplog.text, 15,
             "the bad list to be refused")
    a = sockets(">" + endpoint, zmq.PULL, CurveLink.from_options(
        "a", endpoint, False, str(directory / "a.key_secret"), str(directory / "server.key")))
    wait_for(lambda: a.count == 1, 10, "a to be let in by the old list")
