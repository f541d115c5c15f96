"""A receiver of a shm:// link that misbehaves on purpose, run as its own process by
tests/integration/test_shm.py: it says hello, takes (holds) the first Event's slot and
says so, leaves every later message unread on its socket, prints the first Event's slot
reference as a JSON line, and waits to be killed."""

from __future__ import annotations

import json
import sys

import msgpack
import zmq

from arroyo_core.transports.shm import control
from arroyo_core.transports.shm.attached import ATTACHED
from arroyo_core.transports.shm.processes import host_key, this_process


def main(address: str) -> None:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.connect(address)
    socket.send_multipart(control.hello(this_process(), host_key()))
    held = []
    while True:
        head, _header, *_ = socket.recv_multipart()
        message_id, refs = msgpack.unpackb(head)
        if refs and refs[0] is not None:
            message_id, _, slot_refs = control.read_message([head, b""])
            held.append(ATTACHED.take(slot_refs[0]))  # hold it, as a reader does
            socket.send_multipart(control.took([message_id]))
            print(json.dumps(refs[0]), flush=True)
            break
        socket.send_multipart(control.took([message_id]))
    sys.stdin.read()  # until killed (or the test closes our stdin)


if __name__ == "__main__":
    main(sys.argv[1])
