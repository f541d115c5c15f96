"""The EPICS PVA listener's logic on NTNDArray updates given as plain dicts (the way pvapy
hands their fields out): shape from the dimensions, uniqueId gaps in the ledger, runs
ending when uniqueId goes back or the frames change, broken frames counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from arroyo_core.epics_source import PvaListener
from arroyo_core.errors import DecodeError
from arroyo_core.message import Message
from arroyo_core.ntndarray import read_frame


class Update(dict):
    """An NTNDArray update as pvapy's PvObject hands its fields out (the calls
    ``read_frame`` makes)."""

    def __getitem__(self, key: str) -> Any:
        if key == "codec.name":
            return self["codec"]["name"]
        return super().__getitem__(key)

    def getSelectedUnionFieldName(self) -> str:  # noqa: N802  (pvapy's name)
        (field,) = self["value"][0]
        return field

    def getUnion(self, name: str) -> dict:  # noqa: N802
        return self[name][0]


def update(unique_id: int, array: np.ndarray, codec: str = "", **attributes: Any) -> Update:
    field = {np.dtype("uint16"): "ushortValue", np.dtype("float32"): "floatValue"}[array.dtype]
    return Update({
        "uniqueId": unique_id,
        "timeStamp": {"secondsPastEpoch": 100, "nanoseconds": 500_000_000, "userTag": 0},
        "attribute": [{"name": name, "value": ({"value": value}, {})}
                      for name, value in attributes.items()],
        "dimension": [{"size": n} for n in reversed(array.shape)],
        "codec": {"name": codec}, "value": ({field: array.reshape(-1)},)})


def test_read_frame_shapes_by_the_dimensions_fastest_last() -> None:
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)  # 3 rows of 4: x (4) is dims[0]
    array, meta = read_frame(update(9, image, ColorMode=0, Gain="high"))
    assert array is not None and np.array_equal(array, image) and not array.flags.writeable
    assert meta == {"uniqueId": 9, "timestamp": 100.5,
                    "attributes": {"ColorMode": 0, "Gain": "high"}}


@pytest.mark.parametrize(("pv", "reason"), [
    (update(1, np.zeros((2, 2), np.uint16), codec="lz4"), "codec"),
    (Update({**update(1, np.zeros((2, 2), np.uint16)),
             "dimension": [{"size": 3}, {"size": 2}]}), "length"),
])
def test_broken_frames_raise(pv, reason) -> None:
    with pytest.raises(DecodeError) as caught:
        read_frame(pv)
    assert caught.value.reason == reason


class Channel:
    """Stands in for pvapy's Channel: its monitor calls back with each of ``updates``."""

    def __init__(self, listener: PvaListener, updates: list[Any]) -> None:
        self.listener, self.updates = listener, updates

    def startMonitor(self, request: str) -> None:  # noqa: N802 (pvapy's name)
        for pv in self.updates:
            self.listener._update(pv)

    def isConnected(self) -> bool:  # noqa: N802
        return True


def run(updates: list[Any]) -> tuple[PvaListener, list[Message]]:
    """The listener fed ``updates`` as pvapy's thread would, delivering until idle."""
    listener = PvaListener("test:image", idle_timeout=0.05)
    listener.channel = Channel(listener, updates)
    got: list[Message] = []

    def deliver(message: Message) -> None:
        got.append(message)
        if message.kind == "stop" and message.meta["ended"] == "idle":
            listener.stop()

    listener.start(deliver)
    return listener, got


def test_unique_id_gaps_are_counted_and_kept_in_the_frame_numbers() -> None:
    frame = np.zeros((2, 3), np.uint16)
    listener, got = run([update(i, frame) for i in (4, 5, 8, 9, 12)])
    assert [m.kind for m in got] == ["start"] + ["event"] * 5 + ["stop"]
    assert [m.meta["frame"] for m in got[1:-1]] == [0, 1, 4, 5, 8]
    assert got[-1].meta["frames_sent"] == 9 and got[-1].meta["ended"] == "idle"
    status = listener.status()
    assert status.received == 5 and status.missing == 4
    (ranges,) = [s.missing_ranges for s in status.senders.values()]
    assert ranges == [[6, 7], [10, 11]]


def test_a_new_run_when_unique_id_goes_back_or_the_frames_change() -> None:
    small, large = np.zeros((2, 3), np.uint16), np.zeros((4, 3), np.uint16)
    listener, got = run([update(7, small), update(8, small), update(1, small),
                         update(2, large), update(3, large.astype(np.float32))])
    kinds = [m.kind for m in got]
    assert kinds == ["start", "event", "event", "stop", "start", "event", "stop", "start",
                     "event", "stop", "start", "event", "stop"]
    stops = [m.meta["ended"] for m in got if m.kind == "stop"]
    assert stops == ["restarted", "frames changed", "frames changed", "idle"]
    assert [m.meta["first_unique_id"] for m in got if m.kind == "start"] == [7, 1, 2, 3]


def test_empty_and_broken_updates_are_counted_and_the_good_ones_delivered() -> None:
    frame = np.zeros((2, 2), np.uint16)
    empty = Update({**update(0, frame), "dimension": []})
    listener, got = run([empty, update(1, frame), update(2, frame, codec="jpeg"),
                         Update({"uniqueId": 3}), update(3, frame)])
    assert [m.meta.get("uniqueId") for m in got if m.kind == "event"] == [1, 3]
    status = listener.status()
    assert status.malformed == {"codec": 1, "structure": 1}
    assert status.transport["empty"] == 1
