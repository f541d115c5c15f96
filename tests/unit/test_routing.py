"""The runtime routes: every result of an operator (returned, or published from inside a
hook) goes to every publisher, and async hooks are awaited on the runtime's own loop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from arroyo_core import CollectingSink, Event, MemoryListener, Operator, Runtime, Start, Stop


def _run(operator, *sinks):
    messages = [Start({"run": "r"}), *(Event({"frame": i}, {"x": np.arange(3) + i})
                                       for i in range(4)), Stop({"run": "r"})]
    runtime = Runtime(MemoryListener(messages), operator, list(sinks))
    runtime.run()
    return runtime


class Doubler(Operator):
    def on_event(self, event):
        return Event(event.meta, {"x": event.payload["x"] * 2})


def test_every_result_goes_to_every_publisher_once():
    first, second = CollectingSink(), CollectingSink()
    _run(Doubler(), first, second)
    for sink in (first, second):
        assert [m.kind for m in sink.messages] == ["start"] + ["event"] * 4 + ["stop"]
        assert [int(m.payload["x"][0]) for m in sink.messages[1:-1]] == [0, 2, 4, 6]


def test_publishers_added_to_the_operator_are_routed_by_the_runtime():
    added, given = CollectingSink(), CollectingSink()
    operator = Doubler()
    operator.add_publisher(added)
    runtime = _run(operator, given)
    assert runtime.publishers == [added, given]
    assert len(added.messages) == len(given.messages) == 6


class Splitter(Operator):
    """Publishes one message from inside the hook and returns another."""

    def on_event(self, event):
        self.publish(Event({**event.meta, "part": "a"}, {}))
        return Event({**event.meta, "part": "b"}, {})


def test_publish_from_inside_a_hook_is_routed_in_order():
    sink = CollectingSink()
    _run(Splitter(), sink)
    parts = [(m.meta["frame"], m.meta["part"]) for m in sink.messages if m.kind == "event"]
    assert parts == [(i, p) for i in range(4) for p in "ab"]


class AsyncScaler(Operator):
    """An operator that awaits I/O in its hooks, as arroyopy users write them."""

    def __init__(self):
        super().__init__()
        self.loops = set()
        self.threads = set()

    async def on_event(self, event):
        await asyncio.sleep(0)
        self.loops.add(id(asyncio.get_running_loop()))
        self.threads.add(threading.get_ident())
        return Event(event.meta, {"x": event.payload["x"] + 10})

    async def on_stop(self, stop):
        await asyncio.sleep(0)
        return [Event({"frame": "summary"}, {}), stop]


def test_async_hooks_are_awaited_on_one_loop_of_the_runtime():
    sink = CollectingSink()
    operator = AsyncScaler()
    runtime = _run(operator, sink)
    events = [m for m in sink.messages if m.kind == "event"]
    assert [int(e.payload["x"][0]) for e in events[:4]] == [10, 11, 12, 13]
    assert events[4].meta["frame"] == "summary" and sink.messages[-1].kind == "stop"
    assert len(operator.loops) == 1 and threading.get_ident() in operator.threads
    assert runtime.processed == 6 and not runtime.errors


class AsyncFailing:
    """A plain object with an async process that fails on events: counted, stream goes on."""

    async def process(self, message):
        if message.kind == "event":
            raise ValueError("bad frame")
        return message


def test_async_errors_are_counted_like_sync_ones():
    sink = CollectingSink()
    runtime = _run(AsyncFailing(), sink)
    assert runtime.errors == {"ValueError": 4}
    assert [m.kind for m in sink.messages] == ["start", "stop"]
