"""A running operator service fed malformed messages from a raw ZeroMQ socket keeps
delivering the valid messages around them, counts each malformed one by reason in its
ledger, and logs each reason once."""

from __future__ import annotations

import itertools
import re

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.message import Event, Start, Stop
from arroyo_core.wire import encode
from tests.support.ledgers import status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

LIMIT = 2**20  # the service's max_message_bytes


def header(**fields):
    base = {"v": 1, "kind": "event", "src": "raw", "seq": 0, "time": 1.0, "meta": {},
            "arrays": []}
    return msgpack.packb({**base, **fields}, use_bin_type=True)


# reason -> frames that a listener must reject for that reason
MALFORMED = {
    "msgpack": [b"\xc1 is never valid msgpack"],
    "version": [header(v=2)],
    "length": [header(arrays=[["image", "<u2", [4]]]), b"\x00" * 7],
    "dtype": [header(arrays=[["objects", "|O", [1]]]), b"\x00" * 8],
    "frames": [header(arrays=[["a", "<u2", [2]], ["b", "<u2", [2]]]), b"\x00" * 4],
    "size": encode(Event({}, {"huge": np.zeros(4 * LIMIT, np.uint8)}), src="raw", seq=0),
}


@pytest.fixture
def guarded_operator(service, ipc, zmq_socket, receiver, tmp_path):
    """(raw PUSH socket feeding it, Receiver of its output, its status endpoint, process)."""
    hop1, hop2, stats = ipc(), ipc(), ipc()
    raw = zmq_socket(zmq.PUSH)
    raw.bind(hop1)
    config = tmp_path / "guard.toml"
    config.write_text(f'in = ">{hop1}"\nout = "@{hop2}"\nstatus = "{stats}"\n'
                      f"[in_options]\nmax_message_bytes = {LIMIT}\n")
    process = service("operator", "-c", str(config), name="guard")
    return raw, receiver(">" + hop2), stats, process


def test_malformed_inputs_are_counted_by_reason_and_the_stream_goes_on(guarded_operator):
    raw, out, stats, process = guarded_operator
    seq = itertools.count()

    def send_valid(message):
        raw.send_multipart(encode(message, src="tester", seq=next(seq)), copy=False)

    image = np.arange(64, dtype=">u2").reshape(8, 8)
    send_valid(Start({"run": "r"}))
    frame = 0
    for _ in range(2):  # every bad kind twice: counted twice, logged once
        for frames in MALFORMED.values():
            send_valid(Event({"frame": frame}, {"image": image}))
            frame += 1
            raw.send_multipart(frames, copy=False)
    send_valid(Event({"frame": frame}, {"image": image}))
    send_valid(Stop({"frames_sent": frame + 1}))

    got = out.take(frame + 3, timeout=20)
    assert [m.kind for m in got] == ["start"] + ["event"] * (frame + 1) + ["stop"]
    assert [m.meta["frame"] for m in got[1:-1]] == list(range(frame + 1))
    assert all(np.array_equal(m.payload["image"], image) for m in got[1:-1])

    ledger = status(stats)["input"]
    assert ledger["malformed"] == {reason: 2 for reason in MALFORMED}
    assert ledger["received"] == frame + 3
    assert ledger["missing"] == 0 and ledger["duplicates"] == 0

    def rejection_lines():
        return [line for line in process.output().splitlines()
                if "rejected a malformed message" in line]

    wait_for(lambda: len(rejection_lines()) >= len(MALFORMED), 5, "one log line per reason")
    lines = rejection_lines()
    logged = [re.search(r"message \((\w+):", line).group(1) for line in lines]
    assert sorted(logged) == sorted(MALFORMED), lines
    assert process.process.poll() is None  # still running
