"""Pools without sockets: the fan-in's joining and ordering, the dispatch link's choices
(against an in-memory twin of a transport that addresses peers), a worker's share ledger,
and what a chain file's ``replicas`` becomes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from arroyo_core import dispatch
from arroyo_core.dispatch import DispatchLink
from arroyo_core.fanin import FanIn
from arroyo_core.message import Event, Message, Start, Stop
from arroyo_core.run_ledger import RunLedger
from arroyo_core.transport import Frames, PeerSender
from arroyo_core.wire import decode
from services.chain import parse_chain
from services.deploy import compose_file, supervisor_conf


def collect(fanin: FanIn) -> list[Message]:
    out: list[Message] = []
    fanin.start(lambda message, tag: out.append(message))
    return out


def ev(frame: int, run: str = "r") -> Event:
    return Event({"run": run, "frame": frame})


def worker_stop(index: int, stops: int, filtered: int = 0, base: int = 0) -> Stop:
    meta = {"run": "r", "frames_sent": 10, "pool": {"stops": stops, "index": index,
                                                    "share": 5, "accounted": [base, 0, 0]}}
    if filtered + base:
        meta["filtered"] = filtered + base
    return Stop(meta)


def test_fan_in_passes_one_start_and_one_stop_once_every_worker_stopped():
    fanin = FanIn("t")
    out = collect(fanin)
    try:
        for worker in range(3):
            fanin.take(Start({"run": "r", "pool": {"worker": worker}}), None)
        fanin.take(ev(0), None)
        # two of three Stops: the run goes on; each worker filtered some, one hop before
        # the pool filtered 4 (in every worker's Stop): 4 + 1 + 2 + 3 in all
        fanin.take(worker_stop(0, 3, filtered=1, base=4), None)
        fanin.take(worker_stop(2, 3, filtered=3, base=4), None)
        assert [m.kind for m in out] == ["start", "event"]
        fanin.take(worker_stop(1, 3, filtered=2, base=4), None)
        assert [m.kind for m in out] == ["start", "event", "stop"]
        assert "pool" not in out[0].meta and "pool" not in out[2].meta
        assert out[2].meta["filtered"] == 10 and out[2].meta["frames_sent"] == 10
        assert fanin.starts_absorbed == 2 and fanin.stops_joined == 1
    finally:
        fanin.finish()


def test_fan_in_gives_up_on_a_stop_that_never_comes():
    fanin = FanIn("t", stop_timeout=0.05)
    out = collect(fanin)
    try:
        fanin.take(Start({"run": "r", "pool": {}}), None)
        fanin.take(worker_stop(0, 2), None)
        import time

        deadline = time.monotonic() + 5
        while len(out) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m.kind for m in out] == ["start", "stop"]
        assert fanin.stops_timed_out == 1
    finally:
        fanin.finish()


def test_a_pool_worker_joins_nothing():
    fanin = FanIn("t", joins=False)
    out = collect(fanin)
    fanin.take(Start({"run": "r", "pool": {"worker": 1}}), None)
    fanin.take(worker_stop(0, 3), None)
    fanin.finish()
    assert [m.kind for m in out] == ["start", "stop"] and "pool" in out[1].meta


def test_ordering_holds_early_frames_and_drops_late_ones_counted():
    fanin = FanIn("t", order=True, order_window=3, order_timeout=60)
    out = collect(fanin)
    fanin.take(Start({"run": "r"}), None)
    for frame in (1, 0, 2, 4, 5, 6, 7):  # 3 missing: the window of 3 gives up on it
        fanin.take(ev(frame), None)
    fanin.take(ev(3), None)  # late
    fanin.take(ev(5), None)  # a duplicate
    fanin.take(Stop({"run": "r", "frames_sent": 8}), None)
    fanin.finish()
    frames = [m.meta["frame"] for m in out if m.kind == "event"]
    assert frames == [0, 1, 2, 4, 5, 6, 7]
    assert fanin.late == 1 and fanin.duplicates == 1 and fanin.gaps_given_up == 1
    assert out[-1].meta["dropped"] == 1  # said in the Stop: not lost


def test_the_stats_sink_counts_a_runs_tail_that_comes_after_the_next_runs_start():
    # After a pool the next run's Start goes on as soon as one worker sends it, while the
    # run before still ends at the other workers: its last frames and Stop come later.
    from arroyo_core.sinks import StatsSink

    sink = StatsSink(interval=0)
    first, second = [Start({"run": "a"}), ev(0, "a"), ev(1, "a")], [Start({"run": "b"}), ev(0, "b")]
    for message in [*first, *second, ev(2, "a"), Stop({"run": "a", "frames_sent": 3}),
                    ev(1, "b"), Stop({"run": "b", "frames_sent": 2})]:
        sink.publish(message)
    runs = sink.status().runs
    assert [(r.run, r.frames, r.lost, r.complete, r.joined_at) for r in runs] == [
        ("a", 3, 0, True, None), ("b", 2, 0, True, None)]


def test_a_workers_run_ledger_counts_its_share_only():
    ledger = RunLedger("t")
    ledger.observe(Start({"run": "r", "pool": {"worker": 1}}))
    for frame in (1, 4, 7):
        ledger.observe(ev(frame))
    ledger.observe(Stop({"run": "r", "frames_sent": 9, "filtered": 3,
                         "pool": {"share": 4, "accounted": [2, 0, 0]}}))
    (record,) = ledger.status()
    assert record.share and record.expected == 4 and record.seen == 3
    assert record.missing == 1 and record.filtered == 1 and record.lost == 0


class TwinPeers(PeerSender):
    """An in-memory transport that addresses peers: what each peer was sent, credits and
    hellos queued by the test, and peers that are gone."""

    def __init__(self, max_credit: int = 100) -> None:
        self.sent: dict[bytes, list[Message]] = {}
        self.numbers: dict[bytes, list[tuple[str, int]]] = {}  # (src, seq) of each
        self.heard: list[tuple[bytes, bool, int]] = []
        self.gone: set[bytes] = set()
        self.max_credit = max_credit

    def send_to(self, peer: bytes, frames: Frames) -> bool:
        if peer in self.gone:
            return False
        message, envelope = decode([bytes(f) for f in frames])
        self.sent.setdefault(peer, []).append(message)
        self.numbers.setdefault(peer, []).append((envelope.src, envelope.seq))
        return True

    def credits(self, timeout: float) -> list[tuple[bytes, bool, int]]:
        heard, self.heard = self.heard, []
        return heard

    def probe(self, peer: bytes) -> bool:
        return peer not in self.gone


@pytest.fixture
def twin(monkeypatch) -> TwinPeers:
    peers = TwinPeers()

    class Twin:
        def sender(self, address: Any, options: Any, link: str) -> TwinPeers:
            return peers

        def name(self, address: Any, options: Any) -> str:
            return "twin"

    monkeypatch.setattr("arroyo_core.link.transport_for", lambda address: Twin())
    monkeypatch.setattr(dispatch, "CREDIT_WAIT_S", 0.0)
    return peers


def test_events_go_to_the_worker_with_room_and_start_and_stop_to_all(twin):
    link = DispatchLink("@twin://pool")
    twin.heard = [(b"a", True, 2), (b"b", True, 5)]
    link.publish(Start({"run": "r"}))  # one credit each
    for frame in range(5):
        link.publish(ev(frame))
    # a has 1 credit left after its Start, b has 4: b takes 4, then a (1 left each way)
    kinds = {peer: [m.kind for m in got] for peer, got in twin.sent.items()}
    assert kinds[b"a"].count("event") == 1 and kinds[b"b"].count("event") == 4
    twin.heard = [(b"c", True, 3)]  # joins mid-run: the Start first
    twin.heard.append((b"a", False, 2))
    link.publish(ev(5))
    link.publish(ev(6))
    assert twin.sent[b"c"][0].kind == "start"
    twin.gone.add(b"b")
    link.publish(Stop({"run": "r", "frames_sent": 7}))
    stops = {peer: got[-1] for peer, got in twin.sent.items() if got[-1].kind == "stop"}
    assert set(stops) == {b"a", b"c"}  # b is gone
    assert sorted(s.meta["pool"]["index"] for s in stops.values()) == [0, 1]
    assert all(s.meta["pool"]["stops"] == 2 for s in stops.values())
    shares = sum(s.meta["pool"]["share"] for s in stops.values())
    assert shares + 4 == 7  # b's 4 went with it
    # each worker's stream is numbered on its own, from 0, under a sender id of its own
    for peer, numbers in twin.numbers.items():
        assert [seq for _, seq in numbers] == list(range(len(numbers)))
        assert len({src for src, _ in numbers}) == 1 and twin.sent[peer][0].kind == "start"
    assert len({numbers[0][0] for numbers in twin.numbers.values()}) == 3


def test_a_worker_without_credit_is_given_nothing(twin):
    link = DispatchLink("@twin://pool")
    twin.heard = [(b"slow", True, 2), (b"fast", True, 2)]
    link.publish(Start({"run": "r"}))
    for frame in range(20):
        twin.heard.append((b"fast", False, 1))  # fast finishes one per event; slow never
        link.publish(ev(frame))
    events = {peer: sum(m.kind == "event" for m in got) for peer, got in twin.sent.items()}
    assert events[b"slow"] <= 1 and events[b"fast"] >= 19


def pool_chain(replicas: int = 3, out: str = ">tcp://{sink}:5556") -> Any:
    return parse_chain({"name": "p", "services": {
        "source": {"role": "listener", "source": "simulated", "out": "@tcp://*:5555"},
        "worker": {"role": "operator", "replicas": replicas, "in": ">tcp://{source}:5555",
                   "out": out, "status": "tcp://*:6001"},
        "sink": {"role": "publisher", "in": "@tcp://*:5556"}}})


def test_replicas_make_a_pool_and_its_feeder_dispatch():
    chain = pool_chain()
    assert chain.problems() == []
    worker = chain.resolve("worker", replica=2)
    assert worker.in_pattern == "worker" and worker.name == "worker-2"
    assert worker.status == "tcp://*:6003"
    source = chain.resolve("source")
    assert source.out_pattern == "dispatch" and source.out_options["peers"] == 3
    assert chain.resolve("sink").in_pattern is None


def test_a_pool_that_binds_is_told_to_connect():
    problems = pool_chain(out="@tcp://*:5557").problems()
    assert any("replicas = 3" in problem and "connect" in problem for problem in problems)


def test_a_pool_is_numprocs_under_supervisor_and_replicas_under_compose():
    chain = pool_chain()
    conf = supervisor_conf(chain)
    assert "numprocs=3" in conf and "process_name=%(program_name)s-%(process_num)d" in conf
    assert "worker --replica %(process_num)d" in conf
    compose = yaml.safe_load(compose_file(chain, chain_path="p.toml"))
    worker = compose["services"]["worker"]
    assert worker["deploy"] == {"replicas": 3} and "ports" not in worker
