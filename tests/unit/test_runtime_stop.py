"""Runtime.stop with finish_run: a service fed by another ends after the run's Stop."""

import threading
import time

import pytest

from arroyo_core import CollectingSink, Event, Listener, Runtime, Start, Stop


class HeldRun(Listener):
    """Delivers Start and two Events, then waits until told to send the Stop."""

    def __init__(self) -> None:
        self.send_stop = threading.Event()
        self.sent_events = threading.Event()

    def start(self, deliver):
        deliver(Start({"run": "r1"}))
        for frame in range(2):
            deliver(Event({"run": "r1", "frame": frame}))
        self.sent_events.set()
        while not self.stop_requested.is_set():
            if self.send_stop.wait(0.01):
                deliver(Stop({"run": "r1", "frames_sent": 2}))
                self.send_stop.clear()
                if not self.stop_requested.is_set():  # as a real listener checks per message
                    deliver(Start({"run": "r2"}))  # so the next run does not get through


class PassThroughFor:
    def process(self, message):
        return message


def run_in_thread(runtime):
    thread = threading.Thread(target=runtime.run)
    thread.start()
    return thread


def kinds(sink):
    return [m.kind for m in sink.messages]


@pytest.mark.parametrize("finish_run", [True, False])
def test_stop_mid_run(finish_run):
    listener, sink = HeldRun(), CollectingSink()
    runtime = Runtime(listener, PassThroughFor(), [sink], drain_timeout=5,
                      finish_run=finish_run)
    thread = run_in_thread(runtime)
    assert listener.sent_events.wait(5)
    runtime.stop()
    if finish_run:
        time.sleep(0.2)  # give a wrong implementation the chance to stop early
        assert thread.is_alive(), "stopped before the run's Stop arrived"
        listener.send_stop.set()
    thread.join(5)
    assert not thread.is_alive()
    expected = ["start", "event", "event", "stop"] if finish_run else ["start", "event", "event"]
    assert kinds(sink) == expected


def test_finish_run_gives_up_after_drain_timeout():
    listener, sink = HeldRun(), CollectingSink()
    runtime = Runtime(listener, PassThroughFor(), [sink], drain_timeout=0.3,
                      finish_run=True)
    thread = run_in_thread(runtime)
    assert listener.sent_events.wait(5)
    began = time.monotonic()
    runtime.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - began < 2
    assert kinds(sink) == ["start", "event", "event"]


def test_stop_between_runs_is_immediate():
    class Finished(Listener):
        def start(self, deliver):
            deliver(Start({"run": "r"}))
            deliver(Stop({"run": "r"}))
            self.stop_requested.wait()

    sink = CollectingSink()
    runtime = Runtime(Finished(), PassThroughFor(), [sink], drain_timeout=5,
                      finish_run=True)
    thread = run_in_thread(runtime)
    deadline = time.monotonic() + 5
    while len(sink.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    runtime.stop()
    thread.join(5)
    assert time.monotonic() - began < 1 and kinds(sink) == ["start", "stop"]


