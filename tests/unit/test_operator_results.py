"""The in-process runtime holds an operator to what a service does (arroyo_core.results):
read-only input arrays, results that are Messages, metadata the wire can carry. A mistake
fails the operator on that message: counted by type, logged once, the stream goes on, and
the error says what came back and what should have."""

from __future__ import annotations

import asyncio
import datetime
import logging

import numpy as np
import pytest

from arroyo_core import (
    CollectingSink,
    Event,
    MemoryListener,
    Operator,
    Runtime,
    SimulatedDetector,
    Start,
    Stop,
)
from arroyo_core.errors import EncodeError
from arroyo_core.wire import check, encode

FRAMES = 4


def run(operator, messages=None):
    """Run ``operator`` in one process on Start, FRAMES Events, Stop; (sink, runtime)."""
    if messages is None:
        messages = [Start({"run": "r"}),
                    *(Event({"run": "r", "frame": i}, {"image": np.full((2, 3), i, "<u2")})
                      for i in range(FRAMES)), Stop({"run": "r", "frames_sent": FRAMES})]
    sink = CollectingSink()
    runtime = Runtime(MemoryListener(messages), operator, [sink])
    runtime.run()
    return sink, runtime


class Centroid(Operator):
    """The README's operator, with a mistake to choose."""

    def __init__(self, returns):
        super().__init__()
        self.returns = returns

    def on_event(self, event):
        return self.returns(event)


CASES = {
    "dict": (lambda e: {"centre": np.zeros(2)},
             "Centroid.on_event returned a dict; return an Event, None or a list of Messages"),
    "array": (lambda e: e.payload["image"] * 2,
              "Centroid.on_event returned a numpy array (uint16 (2, 3)); return an Event, "
              "None or a list of Messages"),
    "str": (lambda e: "done", "Centroid.on_event returned a str; return an Event"),
    "list holding a str": (lambda e: [e, "x"],
                           "Centroid.on_event returned a list whose item 1 is a str; "
                           "return an Event, None or a list of Messages"),
    "int": (lambda e: 3, "Centroid.on_event returned an int; return an Event"),
    "datetime in metadata": (
        lambda e: Event({**e.meta, "when": datetime.datetime(2026, 1, 1)}, e.payload),
        "Centroid.on_event returned an Event the wire cannot carry: event metadata: "
        "meta['when'] is a datetime (datetime.datetime(2026, 1, 1, 0, 0)); metadata holds "
        "str, int, float, bool, None, bytes, lists and maps with str keys"),
    "int key in metadata": (lambda e: Event({1: "one"}), "map key 1 is a int; map keys must"),
    "object array": (lambda e: Event(e.meta, {"x": np.array([None, 1])}),
                     "payload 'x': dtype object cannot be sent"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_result_fails_the_operator_counted_and_logged_once(case, caplog):
    returns, message = CASES[case]
    with caplog.at_level(logging.ERROR, logger="arroyo_core.runtime"):
        sink, runtime = run(Centroid(returns))
    assert [m.kind for m in sink.messages] == ["start", "stop"]  # nothing of a bad result
    assert runtime.errors == {"ResultError": FRAMES}
    assert runtime.status().operator.errors == {"ResultError": FRAMES}
    assert runtime.processed == 2
    failures = [r for r in caplog.records if "operator failed" in r.getMessage()]
    assert len(failures) == 1
    assert message in caplog.text


def test_mutating_the_received_array_fails_as_over_the_wire():
    class Mutator(Operator):
        def on_event(self, event):
            event.payload["image"][0, 0] = 7
            return event

    image = np.zeros((2, 3), "<u2")
    sink, runtime = run(Mutator(), [Start({}), Event({"frame": 0}, {"image": image}), Stop({})])
    assert runtime.errors == {"ValueError": 1}  # numpy: assignment destination is read-only
    assert image.flags.writeable and image[0, 0] == 0  # the source's own array is untouched


def test_the_operator_gets_what_decoding_gives():
    seen = {}

    def look(message):
        if message.kind == "event":
            seen.update(message.payload)
        return message

    writable_view = memoryview(bytearray(b"abc"))
    run(type("Look", (), {"process": staticmethod(look)})(),
        [Event({}, {"a": np.arange(3), "b": b"xy", "c": bytearray(b"z"), "d": writable_view})])
    assert not seen["a"].flags.writeable and seen["a"].base is not None  # a view, not a copy
    for name in "bcd":
        assert isinstance(seen[name], memoryview) and seen[name].readonly, name


def test_a_copy_may_be_changed_and_sent():
    class Copier(Operator):
        def on_event(self, event):
            image = event.payload["image"].copy()
            image[0, 0] = 99
            return Event({**event.meta, "when": "2026-01-01T00:00:00"}, {"image": image})

    sink, runtime = run(Copier())
    assert runtime.errors == {}
    assert [int(m.payload["image"][0, 0]) for m in sink.messages[1:-1]] == [99] * FRAMES


def test_none_generators_and_lists_of_messages_are_results():
    class Varied(Operator):
        def on_event(self, event):
            frame = event.meta["frame"]
            if frame == 0:
                return None
            if frame == 1:
                return (Event({"part": p}) for p in "ab")
            return [event, Event({"extra": frame})]

    sink, runtime = run(Varied())
    assert runtime.errors == {}
    assert [m.kind for m in sink.messages] == ["start"] + ["event"] * 6 + ["stop"]


def test_an_async_hook_and_a_plain_process_method_are_named_in_the_error(caplog):
    class Later(Operator):
        async def on_event(self, event):
            await asyncio.sleep(0)
            return {"x": 1}

    class Plain:
        def process(self, message):
            return {"x": 1}

    with caplog.at_level(logging.ERROR):
        run(Later())
        _, runtime = run(Plain())
    assert "Later.on_event returned a dict; return an Event" in caplog.text
    assert "Plain.process returned a dict; return a Start, None" in caplog.text
    assert runtime.errors == {"ResultError": FRAMES + 2}


def test_what_a_hook_publishes_is_checked_too(caplog):
    class Publishes(Operator):
        def on_event(self, event):
            self.publish(event.meta)
            return event

    with caplog.at_level(logging.ERROR):
        sink, runtime = run(Publishes())
    assert runtime.errors == {"ResultError": FRAMES}
    assert "Publishes.publish was given a dict; publish a Message" in caplog.text


def test_the_readme_example_runs_clean():
    class Centre(Operator):
        def on_event(self, event):
            image = event.payload["image"]
            weights = np.where(image > 500, image, 0).astype(np.float64)
            ys, xs = np.indices(image.shape)
            total = weights.sum() or 1.0
            centre = np.array([(ys * weights).sum() / total, (xs * weights).sum() / total])
            return Event(event.meta, {"centre": centre})

    sink = CollectingSink()
    runtime = Runtime(SimulatedDetector(shape=(16, 16), frames=10, rate=0), Centre(), [sink])
    runtime.run()
    assert runtime.errors == {} and len(sink.messages) == 12


@pytest.mark.parametrize("meta", [
    {"when": datetime.date(2026, 1, 1)}, {"n": 2**64}, {"s": "\udc80"}, {"a": [{(1, 2): 3}]},
    {"deep": [[[[[[object()]]]]]]}, {"set": {1, 2}} | {"x": complex(1, 2)},
])
def test_check_refuses_exactly_what_encode_refuses(meta):
    with pytest.raises(EncodeError) as encoded:
        encode(Event(meta), src="s", seq=0)
    with pytest.raises(EncodeError) as checked:
        check(Event(meta))
    assert str(checked.value) == str(encoded.value)


@pytest.mark.parametrize("meta", [
    {}, {"run": "r", "frame": 1}, {"t": (1, 2)}, {"n": np.int64(3), "f": np.float32(0.5)},
    {"nested": {"a": [1, {"b": None}]}, "raw": b"\x00"}, {"big": 2**64 - 1, "neg": -2**63},
])
def test_check_accepts_what_encode_sends(meta):
    encode(Event(meta, {"x": np.zeros(2)}), src="s", seq=0)
    check(Event(meta, {"x": np.zeros(2)}))


def test_check_never_reads_the_payload():
    class Untouchable(np.ndarray):
        def __array__(self, *args, **kwargs):
            raise AssertionError("read")

    big = np.zeros(4, "<u2").view(Untouchable)
    check(Event({}, {"image": big}))
