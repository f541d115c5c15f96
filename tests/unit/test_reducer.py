"""A Reducer after a pool, in one process: it publishes what it accumulated every N events
and at the Stop (marked final), starts afresh each run, and the events it folded in are
counted as filtered by its stage."""

from __future__ import annotations

import numpy as np

from arroyo_core import CollectingSink, Event, MemoryListener, Reducer, Runtime, Start, Stop


class Total(Reducer):
    def reset(self):
        self.total = 0

    def accumulate(self, event):
        self.total += int(event.payload["x"][0])

    def result(self):
        return {"total": np.array([self.total])}


def run(*runs: int, every: int = 2) -> list:
    messages = []
    for index, count in enumerate(runs):
        messages += [Start({"run": index}),
                     *(Event({"run": index, "frame": f}, {"x": np.array([f + 1])})
                       for f in range(count)),
                     Stop({"run": index, "frames_sent": count})]
    sink = CollectingSink()
    Runtime(MemoryListener(messages), Total(every=every), [sink]).run()
    return sink.messages


def test_results_every_n_events_and_a_final_one_at_the_stop():
    got = run(5)
    results = [(m.meta["reduced"], int(m.payload["total"][0]), m.meta["final"])
               for m in got if m.kind == "event"]
    assert results == [(2, 3, False), (4, 10, False), (5, 15, True)]
    stop = got[-1]
    assert stop.kind == "stop" and stop.meta["reducer"] == {"reduced": 5, "results": 3}
    # 5 events in, 2 results while they came: 3 folded in, said in the Stop as filtered
    assert stop.meta["filtered"] == 3


def test_each_run_starts_afresh():
    got = run(3, 2, every=0)  # only at the Stop
    finals = [int(m.payload["total"][0]) for m in got if m.kind == "event"]
    assert finals == [6, 3]
