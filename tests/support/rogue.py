"""A rogue from outside a chain: PULL, SUB, PUSH, PUB and REQ sockets connected to every
address given, for some seconds, counting what they get. Run as a program (in another
network namespace, or as another process), it prints one JSON line:

``{"received": N, "answers": N, "sent": N, "handshakes": N, "sockets": N}``

``received``: messages the PULL and SUB sockets took; ``answers``: replies to the REQ
sockets' ``status`` requests; ``sent``: messages ZeroMQ accepted from the PUSH and PUB
sockets (queued: whether they got anywhere is for the chain's ledgers to say);
``handshakes``: ZMTP handshakes that succeeded (read from each socket's monitor).

    python -m tests.support.rogue --seconds 5 tcp://10.0.0.1:5555 tcp://10.0.0.1:6000
"""

from __future__ import annotations

import argparse
import json
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

KINDS = {"PULL": zmq.PULL, "SUB": zmq.SUB, "PUSH": zmq.PUSH, "PUB": zmq.PUB, "REQ": zmq.REQ}


def attack(addresses: list[str], seconds: float) -> dict[str, int]:
    context = zmq.Context.instance()
    sockets: list[tuple[str, zmq.Socket, zmq.Socket]] = []
    for address in addresses:
        for kind, number in KINDS.items():
            socket = context.socket(number)
            socket.linger = 0
            socket.sndtimeo = 0
            socket.setsockopt(zmq.RECONNECT_IVL, 100)
            if number == zmq.SUB:
                socket.setsockopt(zmq.SUBSCRIBE, b"")
            if number == zmq.REQ:  # a REQ that got no answer may ask again
                socket.setsockopt(zmq.REQ_RELAXED, 1)
            monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            socket.connect(address)
            sockets.append((kind, socket, monitor))
    counts = {"received": 0, "answers": 0, "sent": 0, "handshakes": 0,
              "sockets": len(sockets)}
    poller = zmq.Poller()
    for kind, socket, monitor in sockets:
        if kind in ("PULL", "SUB", "REQ"):
            poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
    end = time.monotonic() + seconds
    next_send = 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_send:
            next_send = time.monotonic() + 0.05
            for kind, socket, _ in sockets:
                if kind in ("PUSH", "PUB", "REQ"):
                    try:
                        socket.send(b"status" if kind == "REQ" else b"rogue frame")
                        counts["sent"] += kind != "REQ"
                    except zmq.Again:
                        pass
        for socket, _ in poller.poll(20):
            if any(socket is monitor for _, _, monitor in sockets):
                recv_monitor_message(socket)
                counts["handshakes"] += 1
                continue
            socket.recv_multipart()
            counts["answers" if socket.type == zmq.REQ else "received"] += 1
    for _, socket, monitor in sockets:
        socket.disable_monitor()
        monitor.close(linger=0)
        socket.close(linger=0)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addresses", nargs="+")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(attack(args.addresses, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
