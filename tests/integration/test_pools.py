"""Worker pools with real processes: a chain file's ``replicas = 3`` under `arroyo run` and
supervisord, Start and Stop at every worker, credit-bounded dispatch to a paused worker,
ordered fan-in with a late frame, and kill -9 of a worker with the loss counted exactly
against a receiver that shares no code with the ledgers (tests.support.kills)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from arroyo_core.message import Event, Start, Stop
from services.processes import ServiceProcess, free_port
from tests.support.chains import pool_chain_toml, write
from tests.support.kills import RawReceiver
from tests.support.ledgers import sink_frames, status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CREDIT = 4


def worker_status(stats: dict[str, str], k: int) -> dict:
    return status(f"{stats['worker']}-{k}")


def sink_order(stats: dict[str, str]) -> dict:
    return status(stats["sink"])["outputs"][0]


@pytest.mark.slow
def test_every_worker_sees_start_and_stop_and_the_sink_gets_one_run_in_order(tmp_path, ipc,
                                                                             run_chain):
    frames = 300
    text, stats = pool_chain_toml(
        ipc, frames=frames, operator="arroyo_testplugins.operators:Busy",
        operator_options="ms = 2", sink="arroyo_testplugins.sinks:OrderSink", sink_options="",
        sink_in="order = true")
    run = run_chain(write(tmp_path / "pool.toml", text), plugin_env())
    run.pids()
    done = wait_for(lambda: [r for r in sink_order(stats)["runs"] if r["stopped"]], 60,
                    f"the run's Stop at the sink\n{run.text()[-3000:]}")
    sink = sink_order(stats)
    # one Start and one Stop reached the sink (no stray message), every frame in order
    assert sink["stray"] == [] and len(sink["runs"]) == 1
    assert done[0]["frames"] == done[0]["frames_sent"] == frames
    assert done[0]["out_of_order"] == []
    shares = []
    for k in range(3):
        record = worker_status(stats, k)["input"]
        (ledger,) = record["run_ledger"]
        # its Start and its Stop passed its input link, and it counted its own share
        assert ledger["started"] and ledger["complete"] and ledger["share"], ledger
        assert ledger["expected"] == ledger["seen"] > 0 and ledger["missing"] == 0
        assert record["missing"] == 0  # a stream of its own: no gap for the others' share
        shares.append(ledger["seen"])
    assert sum(shares) == frames
    fan_in = status(stats["sink"])["input"]["fan_in"]
    assert fan_in["stops_joined"] == 1 and fan_in["starts_absorbed"] == 2
    assert run.stop() == 0


@pytest.mark.slow
def test_a_paused_worker_is_handed_no_more_than_its_credit(tmp_path, ipc, run_chain):
    frames, rate = 2400, 400.0
    text, stats = pool_chain_toml(ipc, frames=frames, rate=rate, worker_in=f"credit = {CREDIT}")
    run = run_chain(write(tmp_path / "pool.toml", text), plugin_env())
    pids = run.pids()
    wait_for(lambda: sink_frames(stats["sink"]) > 100, 30, "frames at the sink")
    paused = worker_status(stats, 1)["input"]
    (src,) = paused["senders"]  # its stream's sender id, as the dispatcher names it

    def seen_by_dispatcher() -> dict:
        pool = status(stats["source"])["outputs"][0]["pool"]
        return next(w for w in pool["workers"] if w["src"] == src)

    os.kill(pids["worker-1"], signal.SIGSTOP)
    try:
        before = seen_by_dispatcher()
        at_pause = sink_frames(stats["sink"])
        wait_for(lambda: sink_frames(stats["sink"]) > at_pause + 600, 30,
                 "the other workers to go on")
        after = seen_by_dispatcher()
        # it holds at most its credit, and was given at most what its credit had left
        assert after["held"] <= CREDIT, after
        assert after["given"] - before["given"] <= CREDIT, (before, after)
    finally:
        os.kill(pids["worker-1"], signal.SIGCONT)
    run_record = wait_for(lambda: [r for r in status(stats["sink"])["outputs"][0]["runs"]
                                   if r["complete"]], 60, "the end of the run")[0]
    assert run_record["frames"] == frames and run_record["lost"] == 0
    assert run.stop() == 0


@pytest.mark.slow
def test_ordered_fan_in_passes_frames_in_order_and_counts_a_late_one(sender):
    service = ServiceProcess("publisher", [
        "--in", "@tcp://127.0.0.1:*",
        "--sink", "arroyo_testplugins.sinks:OrderSink", "--in-option", "order=true",
        "--in-option", "order_window=8", "--in-option", "order_timeout=0.3",
        "--status", f"tcp://127.0.0.1:{free_port()}"], name="ordered", env=plugin_env())
    try:
        service.wait_ready()
        endpoint = service.bound("status")
        feed = sender(">" + service.bound("in"))
        feed.publish(Start({"run": "r"}))

        def event(frame: int) -> None:
            feed.publish(Event({"run": "r", "frame": frame}, {"x": bytes([frame])}))

        def fan_in() -> dict:
            return status(endpoint)["input"].get("fan_in", {})

        for frame in (1, 0, 2, 5, 4, 6):  # 1 waits for 0; 4..6 wait for 3, which is late
            event(frame)
        wait_for(lambda: fan_in().get("gaps_given_up") == 1, 10, "the gap before 4 given up")
        event(3)  # too late: 4, 5 and 6 went on without it
        event(7)
        feed.publish(Stop({"run": "r", "frames_sent": 8}))
        (run,) = wait_for(lambda: [r for r in status(endpoint)["outputs"][0]["runs"]
                                   if r["stopped"]], 10, "the run's Stop")
        # frames 0 1 2 4 5 6 7 in that order: OrderSink notes where the n-th frame was not n
        assert run["frames"] == 7
        assert run["out_of_order"] == [[3, 4], [4, 5], [5, 6], [6, 7]]
        counts = fan_in()
        assert counts["late"] == 1 and counts["gaps_given_up"] == 1
        (ledger,) = status(endpoint)["input"]["run_ledger"]
        # the late frame is dropped by policy, said in the Stop: missing here, not lost
        assert ledger["missing"] == 1 and ledger["policy_dropped"] == 1
        assert ledger["missing_ranges"] == [[3, 3]]
    finally:
        service.stop()


class PoolFeeder(threading.Thread):
    """The chain's source, in the test process: a DispatchLink that sends one run at
    ``rate`` until told to end it, so the run outlasts whatever a loaded machine makes the
    test wait for. What it sent is the oracle's count."""

    def __init__(self, address: str, rate: float, reliable: bool = False) -> None:
        super().__init__(daemon=True, name="pool-feeder")
        from arroyo_core.dispatch import DispatchLink

        self.link = DispatchLink("@" + address, peers=3, linger_ms=5000, reliable=reliable)
        self.link.open()
        self.rate = rate
        self.sent = 0
        self.end = threading.Event()

    def run(self) -> None:
        self.link.publish(Start({"run": "k"}))
        payload = {"x": bytes(1024)}
        while not self.end.is_set():
            self.link.publish(Event({"run": "k", "frame": self.sent}, payload))
            self.sent += 1
            self.end.wait(1 / self.rate)
        self.link.publish(Stop({"run": "k", "frames_sent": self.sent}))

    def worker(self, src: str) -> dict:
        pool = self.link.status().transport["pool"]
        return next(w for w in pool["workers"] if w["src"] == src)

    def close(self) -> None:
        self.end.set()
        self.join(timeout=30)
        self.link.close()


@pytest.mark.slow
def test_kill_9_of_a_worker_under_supervisord_reports_the_true_loss(tmp_path, ipc, supervisor,
                                                                    monkeypatch):
    monkeypatch.setenv("PYTHONPATH", plugin_env()["PYTHONPATH"])  # supervisord passes it on
    hop1, out = free_port(), free_port()
    # the test process is the source: the workers connect to it
    # Workers that take 8 ms a frame: two of them cannot keep up with 300 frames/s, so their
    # credit runs low and the paused one is given frames until its own is used up.
    text, stats = pool_chain_toml(ipc, name="pk", worker_in=f"credit = {CREDIT}", sink="zmq",
                                  operator="arroyo_testplugins.operators:Slow",
                                  operator_options="ms = 8",
                                  sink_options=f'address = "@tcp://127.0.0.1:{out}"',
                                  feed=f"tcp://127.0.0.1:{hop1}")
    receiver = RawReceiver(f"tcp://127.0.0.1:{out}")
    receiver.start()
    feeder = PoolFeeder(f"tcp://127.0.0.1:{hop1}", rate=300.0)
    try:
        sv = supervisor(write(tmp_path / "pool.toml", text))
        feeder.start()
        wait_for(lambda: receiver.count() > 300, 60, "frames at the receiver")
        old = sv.info("pk:worker-1")["pid"]
        (src,) = worker_status(stats, 1)["input"]["senders"]
        # Held back first, so that it dies holding a full credit's worth of frames.
        os.kill(old, signal.SIGSTOP)
        wait_for(lambda: feeder.worker(src)["held"] >= CREDIT, 20, "worker-1 to hold frames")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: sv.info("pk:worker-1")["pid"] not in (0, old), 20, "a new worker-1")
        # the restarted worker rejoins the pool (the run's Start first) and takes a share
        wait_for(lambda: (worker_status(stats, 1)["input"]["run_ledger"] or [{}])[-1]
                 .get("seen", 0) > 0, 30, "the new worker-1 to take frames")
        assert worker_status(stats, 1)["input"]["run_ledger"][-1]["started"]
        at_rejoin = receiver.count()
        wait_for(lambda: receiver.count() > at_rejoin + 300, 60, "the pool to go on")
        feeder.close()
        wait_for(lambda: receiver.frames_sent, 60, "the run's Stop at the receiver")
        forwarder = status(stats["sink"])
        (reported,) = forwarder["input"]["run_ledger"]
        pool = feeder.link.status().transport["pool"]
    finally:
        feeder.close()
        receiver.stop()
    (sent,) = receiver.frames_sent.values()
    true_loss = sent - len(set(receiver.frames))
    assert sent == feeder.sent and len(receiver.frames) == len(set(receiver.frames))
    # the pool's loss, from the frame numbers at the stage after it, is the true loss:
    # what the killed worker held (at most its credit, less what it had sent on)
    assert reported["expected"] == sent and reported["complete"]
    assert reported["missing"] == true_loss > 0, (reported, true_loss)
    assert forwarder["input"]["fan_in"]["stops_timed_out"] == 0
    assert pool["joined"] == 4 and pool["gone"] == 1


def test_replicas_by_hand_run_a_pool_of_worker_processes(receiver):
    from arroyo_core.dispatch import DispatchLink

    sink = receiver("@tcp://127.0.0.1:*")  # an InputLink: it joins the workers' Stops
    feed = DispatchLink("@tcp://127.0.0.1:*", peers=2, linger_ms=0)
    feed.open()
    status_port = free_port()
    pool = ServiceProcess("operator", [
        "--replicas", "2", "--in", ">" + str(feed.status().bound), "--out", ">" + str(sink.bound),
        "--status", f"tcp://127.0.0.1:{status_port}"], name="w")
    try:
        feed.publish(Start({"run": "r"}))  # waits for both workers
        for frame in range(20):
            feed.publish(Event({"run": "r", "frame": frame}, {"x": b"x"}))
        feed.publish(Stop({"run": "r", "frames_sent": 20}))
        got = sink.take(22)
        assert [m.kind for m in got].count("start") == 1 and got[-1].kind == "stop"
        assert sorted(m.meta["frame"] for m in got if m.kind == "event") == list(range(20))
        for k in range(2):  # worker K: named w-K, its status at the port + K
            record = status(f"tcp://127.0.0.1:{status_port + k}")
            assert record["name"] == f"w-{k}" and record["input"]["received"] >= 2
    finally:
        assert pool.stop() == 0
        feed.abandon()
        feed.close()


def test_a_worker_gives_credits_back_by_the_handful_and_all_once_it_holds_nothing(ipc,
                                                                                  zmq_socket):
    """Each credit message wakes the worker's receiving thread (which takes the GIL from
    the operator) and the dispatcher: they go back in handfuls of half the credit, and the
    rest as soon as the worker holds nothing (else a run's tail would wait for them)."""
    import zmq

    from arroyo_core.address import Address
    from arroyo_core.transports.zmq.pool import WorkerReceiver

    address = ipc()
    dispatcher = zmq_socket(zmq.ROUTER)
    dispatcher.bind(address)
    worker = WorkerReceiver(Address.parse(">" + address, bind_by_default=False), "test",
                            credit=8)
    worker.open()
    stop, delivered = threading.Event(), []
    thread = threading.Thread(target=lambda: delivered.extend(worker.receive(stop)))
    thread.start()

    def credit() -> tuple[bytes, int]:
        assert dispatcher.poll(10_000), "no word from the worker"
        _, kind, count = dispatcher.recv_multipart()
        return kind, int(count)

    try:
        assert credit() == (b"hello", 8)
        for n in range(10):
            dispatcher.send_multipart([worker.options[zmq.ROUTING_ID], b"message %d" % n])
        wait_for(lambda: len(delivered) == 10, 10, "10 messages at the worker")
        worker.acknowledge([1, 1, 1])  # 3 of a handful of 4
        assert not dispatcher.poll(300), "a credit went back before a handful was due"
        worker.acknowledge([1])
        assert credit() == (b"credit", 4)
        for _ in range(4):
            worker.acknowledge([1])
        assert credit() == (b"credit", 4)
        worker.acknowledge([1])  # 9 of 10 finished: 1 due, 1 held
        assert not dispatcher.poll(300), "a credit went back before a handful was due"
        worker.acknowledge([1])  # the last one it held: what is due goes at once
        assert credit() == (b"credit", 2)
    finally:
        stop.set()
        thread.join(10)
        worker.close()

