"""EPICS PV Access both ways, through pvapy, against real servers the tests start:
pvapy's areaDetector simulator (``pvapy-ad-sim-server``) for the listener, a plain
``pvaccess.PvaServer`` for broken frames, and a plain pvaccess monitor reading back what
the publisher serves.

Every process here searches only the loopback interface on private ports
(tests.support.facility.epics_environment), so the tests neither reach nor collide with
other EPICS servers. pvaccess reads them once per process: this module sets them for the
whole module, before it first uses pvaccess.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from arroyo_core.epics_source import PvaListener
from arroyo_core.message import Event, Start, Stop
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from tests.support.facility import Recorder, ad_sim, epics_environment, script
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

pva = pytest.importorskip("pvaccess", reason="pip install arroyo-stream[epics]")

SHAPE = (48, 64)  # (ny, nx) of the simulator's frames


@pytest.fixture(scope="module")
def epics_env() -> Iterator[dict[str, str]]:
    env = epics_environment()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


class Monitor:
    """A plain pvaccess monitor of ``channel``: each frame's uniqueId, crc32 and more."""

    def __init__(self, channel: str, request: str = "field()") -> None:
        self.frames: dict[int, dict[str, Any]] = {}
        self.channel = pva.Channel(channel, pva.PVA)
        self.channel.subscribe("test", self._update)
        self.channel.startMonitor(request)

    def _update(self, pv: Any) -> None:
        if not pv["dimension"]:
            return
        (field, value), = pv["value"][0].items()
        self.frames[pv["uniqueId"]] = {
            "crc32": zlib.crc32(value), "field": field, "value": np.array(value),
            "dims": [d["size"] for d in pv["dimension"]],
            "attributes": {a["name"]: next(iter(a["value"][0].values()))
                           for a in pv["attribute"]}}

    def close(self) -> None:
        self.channel.stopMonitor()  # (not unsubscribe: pvapy 5.6 then aborts now and then)


LOGS: list[Any] = []  # the simulators of the test that runs


def _logs() -> str:
    return "\n".join(f"--- {sim.argv}\n{sim.output()}" for sim in LOGS)


class Running:
    """A PvaListener in a real Runtime (in a thread) whose sink is a Recorder that keeps
    each frame's crc32 by uniqueId."""

    def __init__(self, listener: PvaListener, operator: Any = None) -> None:
        self.listener = listener
        self.crcs: dict[int, int] = {}
        self.sink = Recorder(lambda e: self.crcs.__setitem__(e.meta["uniqueId"],
                                                             zlib.crc32(e.payload["image"])))
        self.sink.context = lambda: f"{listener.status()}\n{_logs()}"
        self.runtime = Runtime(listener, operator or PassThrough(), [self.sink],
                               drain_timeout=5)
        self.runtime.open()
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.runtime.stop()
            self.thread.join(10)


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Registers things to stop or close at teardown, last first."""
    things: list[Any] = []

    def add(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield add
    for thing in reversed(things):
        if isinstance(thing, Monitor):
            thing.close()
        else:
            thing.stop()


@pytest.fixture
def simulator(tmp_path, epics_env, closing) -> Callable[..., Any]:
    skip_unless(script("pvapy-ad-sim-server") is not None,
                "pvapy-ad-sim-server is not installed (pip install arroyo-stream[epics])")

    def start(channel: str, shape: tuple[int, int] = SHAPE, **options: Any) -> Any:
        sim = closing(ad_sim(tmp_path, channel, epics_env, shape=shape, **options))
        LOGS[:] = [sim]
        sim.start()
        return sim

    return start


def test_frames_from_the_area_detector_simulator(simulator, closing) -> None:
    """Start, one Event per frame (dtype and shape from the NTNDArray, uniqueId as the
    frame number, attributes in the metadata), the same bytes a plain pvaccess monitor
    got, and a Stop once the simulator is gone (the channel disconnected)."""
    sim = simulator("arroyo:test:whole", fps=200)
    running = closing(Running(PvaListener("arroyo:test:whole", idle_timeout=1.0)))
    monitor = closing(Monitor("arroyo:test:whole"))
    wait_for(lambda: len(running.crcs.keys() & monitor.frames.keys()) >= 10, 30,
             "10 frames that both the listener and the plain monitor got")
    sim.stop()
    (stop,) = running.sink.wait("stop", 1, timeout=15)
    (start,) = running.sink.of("start")
    events = running.sink.of("event")
    assert start["shape"] == list(SHAPE) and start["dtype"] == "<u2"
    assert all(arrays == {"image": ("<u2", SHAPE)} for arrays in running.sink.arrays[1:-1])
    ids = [meta["uniqueId"] for meta in events]
    assert ids == sorted(set(ids))
    assert [meta["frame"] for meta in events] == [i - start["first_unique_id"] for i in ids]
    assert all(meta["attributes"]["ColorMode"] == 0 for meta in events)
    assert stop["ended"] == "disconnected" and stop["frames"] == len(events)
    status = running.listener.status()
    assert status.missing == ids[-1] - ids[0] + 1 - len(ids) and status.malformed == {}
    both = running.crcs.keys() & monitor.frames.keys()
    assert all(running.crcs[i] == monitor.frames[i]["crc32"] for i in both)


def test_a_restarted_simulator_starts_a_new_run(simulator, closing) -> None:
    """The simulator killed mid-run and started again: the run ends when the channel
    disconnects (whatever uniqueId the new one has reached when pvapy reconnects), and
    the new simulator's frames make a new run."""
    sim = simulator("arroyo:test:restart")
    running = closing(Running(PvaListener("arroyo:test:restart", idle_timeout=30.0)))
    running.sink.wait("event", 5)
    sim.stop()
    sim.start()  # uniqueId from 1 again
    running.sink.wait("start", 2, timeout=30)
    before = len(running.sink.of("event"))
    running.sink.wait("event", before + 3)
    first, second = running.sink.of("start")
    (stop,) = running.sink.of("stop")
    assert stop["run"] == first["run"] and stop["ended"] == "disconnected"
    kinds = running.sink.kinds
    assert kinds.index("stop") == kinds.index("start", 1) - 1  # nothing between the runs
    later = [m for m in running.sink.of("event") if m["run"] == second["run"]]
    assert later and later[0]["uniqueId"] == second["first_unique_id"]


class Slow(PassThrough):
    """Holds the first Event for a while, then takes 20 ms for each (half the server's
    rate), so frames back up through the runtime's queue, the listener's, pvapy's socket
    and the server's monitor queue, which then drops updates (a load, not a wait for a
    race; the hold alone made no gap once on a quiet machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False

    def on_event(self, event: Event) -> Any:
        threading.Event().wait(0.02)
        if not self.held:
            self.held = True
            threading.Event().wait(2.5)
        return event


def test_frames_the_server_dropped_show_as_unique_id_gaps(simulator, closing) -> None:
    simulator("arroyo:test:gaps", shape=(1024, 1024), fps=100)  # 2 MB: queues fill fast
    running = closing(Running(PvaListener("arroyo:test:gaps", server_queue=2),
                              Slow()))
    running.sink.wait("event", 150, timeout=60)
    running.stop()  # the runtime drains: the sink gets every frame the listener delivered
    ids = [meta["uniqueId"] for meta in running.sink.of("event")]
    gaps = sum(b - a - 1 for a, b in zip(ids, ids[1:], strict=False))
    assert gaps > 0, "the slow operator made no gap: the test proves nothing"
    status = running.listener.status()
    assert status.missing == gaps and status.received == len(ids)
    assert running.sink.of("stop")[-1]["frames_sent"] == ids[-1] - ids[0] + 1


def test_broken_frames_are_counted_and_the_stream_goes_on(epics_env, closing) -> None:
    """A plain PvaServer serves a frame whose value does not fill its dimensions and a
    compressed one between good frames: each broken one is counted, the good ones come."""
    from arroyo_core.ntndarray import write_frame

    server = pva.PvaServer()
    closing(server)
    server.addRecord("arroyo:test:broken", pva.NtNdArray())
    running = closing(Running(PvaListener("arroyo:test:broken", idle_timeout=30.0)))
    wait_for(lambda: running.listener.status().transport["empty"] == 1, 20,
             "the listener to connect")
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    short = write_frame(frame, 2, 0.0, {})
    short["dimension"] = [pva.PvDimension(5, 0, 5, 1, False), pva.PvDimension(3, 0, 3, 1, False)]
    packed = write_frame(frame, 3, 0.0, {})
    packed["codec"] = pva.PvCodec("lz4", pva.PvInt(int(pva.USHORT)))
    for index, pv in enumerate([write_frame(frame, 1, 0.0, {}), short,
                                write_frame(frame, 2, 0.0, {}), packed,
                                write_frame(frame, 3, 0.0, {})]):
        server.update("arroyo:test:broken", pv)
        # one update at a time: PV Access keeps only the newest for a monitor
        wait_for(lambda n=index + 2: running.listener.updates >= n, 10, f"update {index}")
    running.sink.wait("event", 3)
    assert [meta["uniqueId"] for meta in running.sink.of("event")] == [1, 2, 3]
    assert running.listener.status().malformed == {"length": 1, "codec": 1}
    assert running.thread.is_alive()


def test_the_publisher_serves_events_to_a_plain_pvaccess_client(epics_env, service,
                                                                 sender, closing) -> None:
    """``arroyo publisher --sink epics-pva``: each Event's array, uniqueId (frame + 1) and
    scalar metadata, as a plain pvaccess monitor reads them."""
    from services.processes import free_port

    port = free_port()
    service("publisher", "--in", f"@tcp://127.0.0.1:{port}", "--sink", "epics-pva",
            "-o", "channel=arroyo:test:out", env=epics_env)
    monitor = closing(Monitor("arroyo:test:out", "record[queueSize=32]field()"))
    feeder = sender(f">tcp://127.0.0.1:{port}", pattern="push")
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 2**16, SHAPE, dtype=np.uint16) for _ in range(5)]
    floats = rng.random((3, 5, 7)).astype(np.float32)
    feeder.publish(Start({"run": "r"}))
    for index, frame in enumerate(frames):
        feeder.publish(Event({"run": "r", "frame": index, "gain": 1.5, "mode": "fast"},
                             {"image": frame}))
        wait_for(lambda i=index: i + 1 in monitor.frames, 20, f"frame {index} served")
    feeder.publish(Event({"run": "r", "frame": 5}, {"cube": floats}))
    feeder.publish(Stop({"run": "r", "frames_sent": 6}))
    wait_for(lambda: 6 in monitor.frames, 20, "the float frame served")
    for index, frame in enumerate(frames):
        got = monitor.frames[index + 1]
        assert got["field"] == "ushortValue" and got["dims"] == [SHAPE[1], SHAPE[0]]
        assert np.array_equal(got["value"].reshape(SHAPE), frame)
        assert got["attributes"] == {"frame": index, "gain": 1.5, "mode": "fast", "run": "r"}
    cube = monitor.frames[6]
    assert cube["field"] == "floatValue" and cube["dims"] == [7, 5, 3]
    assert np.array_equal(cube["value"].reshape(3, 5, 7), floats)
