"""The ``dectris`` source as a service, fed by ``arroyo dectris-sim`` (a stand-in detector
sending stream v2) in a process of its own: whole series arrive as runs with every
channel's image bit-exact, a detector or a listener restarting mid-series ends the cut
series with an aborted Stop and goes on, and malformed messages are counted by reason
while the service keeps running."""

from __future__ import annotations

import pytest

from arroyo_core.message import Event, Start, Stop
from services.processes import ServiceProcess
from tests.support.ledgers import status
from tests.support.waiting import wait_for

pytest.importorskip("cbor2")
pytest.importorskip("bitshuffle")
pytest.importorskip("lz4")

pytestmark = pytest.mark.integration

SHAPE = (48, 40)


@pytest.fixture
def simulators():
    """Starts ``arroyo dectris-sim`` processes; stops (or kills) each at teardown."""
    started: list[ServiceProcess] = []

    def start(address: str, *args: str) -> ServiceProcess:
        process = ServiceProcess.from_argv(
            ["dectris-sim", "--address", f"@{address}", "--shape", ",".join(map(str, SHAPE)),
             *args], name="sim")
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop(timeout=5)


@pytest.fixture
def listener(receiver, service, ipc, tmp_path):  # the service stops before the receiver
    """(detector address, Receiver of the service's output, status endpoint, start) where
    ``start()`` starts the ``dectris`` listener service from a config file."""
    detector, out, stats = ipc("detector"), ipc(), ipc()
    config = tmp_path / "listener.toml"
    config.write_text(f'source = "dectris"\nout = "@{out}"\nstatus = "{stats}"\n'
                      f'[options]\naddress = ">{detector}"\nthreads = 2\n')
    got = receiver(f">{out}")
    return detector, got, stats, lambda: service("listener", "-c", str(config), name="det")


def take_run(receiver, timeout=30.0):
    """The messages of one run, from its Start to its Stop."""
    first = receiver.get(timeout)
    assert isinstance(first, Start), first
    messages = [first]
    while not isinstance(messages[-1], Stop):
        messages.append(receiver.get(timeout))
    return messages


def assert_images(events, seed=0, channels=2, dtype="uint16"):
    from arroyo_core.dectris import simulated_image

    for event in events:
        assert sorted(event.payload) == [f"threshold_{n + 1}" for n in range(channels)]
        for n in range(channels):
            want = simulated_image(seed, event.meta["frame"], n, SHAPE, dtype)
            got = event.payload[f"threshold_{n + 1}"]
            assert got.dtype == want.dtype and (got == want).all(), event.meta


def test_whole_series_arrive_as_runs(listener, simulators):
    detector, got, _, start = listener
    start()
    sim = simulators(detector, "--images", "12", "--series", "2", "--channels", "3")
    runs = [take_run(got), take_run(got)]
    for run in runs:
        start_meta, events, stop = run[0].meta, run[1:-1], run[-1].meta
        assert start_meta["channels"] == ["threshold_1", "threshold_2", "threshold_3"]
        assert start_meta["shape"] == list(SHAPE) and start_meta["frames"] == 12
        assert start_meta["omitted_arrays"] == [f"pixel_mask/threshold_{n}" for n in (1, 2, 3)]
        assert [e.meta["frame"] for e in events] == list(range(12))
        assert {e.meta["run"] for e in run} == {start_meta["run"]}
        assert_images(events, channels=3)
        assert stop["frames_sent"] == 12 and stop["aborted"] is False
    assert runs[0][0].meta["run"] != runs[1][0].meta["run"]
    assert sim.process.wait(10) == 0
    assert got.listener.status().run_ledger[-1].lost == 0


def test_a_detector_restarting_mid_series_cuts_that_series_and_the_next_one_arrives(
        listener, simulators):
    detector, got, stats, start = listener
    start()
    first = simulators(detector, "--images", "100000", "--rate", "200")
    opened = got.get()
    events = [got.get() for _ in range(5)]
    first.process.kill()  # kill -9: the series never gets its end message
    first.process.wait(10)
    simulators(detector, "--images", "8")
    cut = []
    while not isinstance(cut[-1:] and cut[-1], Stop):
        cut.append(got.get())
    events += cut[:-1]
    assert all(isinstance(e, Event) for e in events)
    assert [e.meta["frame"] for e in events] == list(range(len(events)))
    stop = cut[-1].meta
    assert stop["run"] == opened.meta["run"] and stop["aborted"] is True
    assert "started before its end" in stop["cut"] and stop["frames_sent"] == len(events)
    second = take_run(got)
    assert second[0].meta["run"] != opened.meta["run"]
    assert len(second) == 10 and second[-1].meta["aborted"] is False
    assert_images(second[1:-1])
    assert status(stats)["input"]["malformed"] == {}


def test_a_listener_restarting_mid_series_joins_it(listener, simulators):
    """Also what failed 1 run in 10 here: the receiver (connecting) took the kill for a
    connection libzmq would not retry, connected again itself, and later cut the live
    connection to the restarted listener with its aborted Stop unread."""
    detector, got, stats, start = listener
    service = start()
    sim = simulators(detector, "--images", "100000", "--rate", "200")
    opened = got.get()
    wait_for(lambda: status(stats)["input"]["received"] >= 5, what="5 images")
    service.process.kill()  # kill -9: what it held is lost, the detector goes on
    service.process.wait(10)
    restarted = start()
    while not (isinstance(joined := got.get(), Start) and joined.meta.get("joined")):
        pass
    assert joined.meta["run"] == opened.meta["run"]
    after = got.get()
    assert isinstance(after, Event) and after.meta["frame"] >= 5
    sim.signal()  # the detector stops mid-series: no end message
    assert sim.process.wait(10) == 0
    restarted.stop()  # the listener ends the open series as it stops
    rest = []
    while not isinstance(rest[-1:] and rest[-1], Stop):
        rest.append(got.get())
    stop = rest[-1].meta
    assert stop["run"] == opened.meta["run"] and stop["aborted"] is True
    assert stop["cut"] == "the listener stopped"
    frames = [after.meta["frame"]] + [e.meta["frame"] for e in rest[:-1]]
    assert frames == list(range(frames[0], frames[0] + len(frames)))
    assert stop["frames_sent"] == frames[-1] + 1
    links = wait_for(lambda: (s := got.listener.stats())["peers"]["disconnects"] == 2 and s,
                     what="the receiver seeing both listeners leave")
    assert links["peers"]["connects"] == 2 and links["peers"]["peers"] == 0
    assert links["connections"]["dropped"] == 0  # libzmq connected again, not us


def test_malformed_messages_are_counted_and_the_service_goes_on(listener, simulators):
    detector, got, stats, start = listener
    service = start()
    simulators(detector, "--images", "6", "--series", "2", "--malformed",
               "--compression", "lz4")  # (the other tests' images are bslz4)
    runs = [take_run(got), take_run(got)]
    for run in runs:
        assert len(run) == 8 and run[-1].meta["aborted"] is False
        assert_images(run[1:-1])
    ledger = status(stats)["input"]
    assert ledger["malformed"] == {"cbor": 4, "message": 4, "compression": 2, "array": 2}
    assert ledger["received"] == 12
    assert service.process.poll() is None
    logged = [line for line in service.lines if "rejected a malformed message" in line]
    assert len(logged) == 4, logged  # once per reason


def test_a_detector_nobody_reads_from_ends_on_sigterm(simulators, ipc):
    """Its sends wait for a receiver that never comes; SIGTERM must still end it."""
    sim = simulators(ipc("nobody"), "--images", "50", "--rate", "0")
    sim.signal()
    assert sim.process.wait(5) == 0
