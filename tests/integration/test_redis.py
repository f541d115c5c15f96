"""Redis links against a real redis-server that each test starts on a free port.

The server requires a password and the links use database 3, so every URL here carries
both. Service tests run real ``arroyo`` processes; the test process is the final sink (a
ZeroMQ PULL socket that records each frame index it receives). Helpers:
tests.support.redis_server and tests.support.chain_ends.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time

import numpy as np
import pytest

from arroyo_core.errors import ConfigError
from arroyo_core.link import ZmqListener, ZmqPublisher
from arroyo_core.message import Event, Message, Start, Stop
from arroyo_core.runtime import Runtime
from arroyo_core.sinks import CollectingSink
from services.status_server import query_status
from tests.support.chain_ends import FrameSink
from tests.support.in_process import HoldingOperator
from tests.support.messages import assert_all_same
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for

redis = pytest.importorskip("redis")
from arroyo_core.transports.redis import (  # noqa: E402  (needs redis-py)
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisStreamListener,
    RedisStreamPublisher,
)
from tests.support.redis_server import (  # noqa: E402
    PASSWORD,
    RedisServer,
    acknowledged,
    redis_entries,
)

pytestmark = pytest.mark.integration



def every_kind() -> list[Message]:
    """Start, Events of every dtype kind, raw bytes, empty and 0-d arrays, 16 MiB, Stop."""
    rng = np.random.default_rng(4)
    return [
        Start({"run": "r1", "nested": {"shape": [3, 4], "ok": True, "gain": 1.5}, "none": None}),
        Event({"frame": 0}, {
            "u16": rng.integers(0, 2**16, (3, 4), dtype=np.uint16),
            "i64": np.arange(-5, 5, dtype=np.int64),
            "f32": rng.random(7).astype(np.float32),
            "f64be": rng.random((2, 2)).astype(">f8"),
            "c64": (rng.random(3) + 1j).astype(np.complex64),
            "bool": np.array([True, False, True]),
            "when": np.array(["2024-01-01T00:00:00.5"], dtype="datetime64[ns]"),
            "text": np.array(["ab", "cde"], dtype="S3"),
            "utext": np.array(["ünï"], dtype="U3"),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "scalar": np.array(42, dtype=np.int32),
            "raw": b"\x00raw bytes\xff",
        }),
        Event({"frame": 1}, {}),
        Event({"frame": 2}, {"big": rng.integers(0, 2**16, 8 * 2**20, dtype=np.uint16)}),
        Stop({"run": "r1", "frames_sent": 3}),
    ]


def test_stream_round_trip_of_every_message_kind_is_bit_identical(redis_server, runtimes):
    publisher = RedisStreamPublisher(redis_server.url(), stream="frames")
    publisher.open()
    sent = every_kind()
    for message in sent:
        publisher.publish(message)
    listener = RedisStreamListener(redis_server.url(), stream="frames", group="g",
                                   consumer="c1")
    running = runtimes(listener)
    received = running.wait_for(len(sent))
    assert_all_same(sent, received)
    assert received[3].payload["big"].nbytes == 16 * 2**20
    # Every entry is acknowledged once handled: nothing stays pending.
    client = redis_server.client()
    wait_for(lambda: listener.stats()["redis"]["acked"] == len(sent), 5, "acknowledgements")
    assert client.xpending("frames", "g")["pending"] == 0
    assert publisher.stats()["sent"] == len(sent)
    publisher.close()


def test_pubsub_round_trip_of_every_message_kind_is_bit_identical(redis_server, runtimes):
    listener = RedisPubSubListener(redis_server.url(), channel="live")
    running = runtimes(listener)
    publisher = RedisPubSubPublisher(redis_server.url(), channel="live", subscribers=1,
                                     peer_timeout=10)
    publisher.open()
    sent = every_kind()
    for index, message in enumerate(sent):
        # One at a time: pub/sub keeps nothing, and Redis would disconnect a subscriber
        # with more than 32 MiB unread (client-output-buffer-limit pubsub).
        publisher.publish(message)
        running.wait_for(index + 1)
    assert_all_same(sent, running.messages)
    assert publisher.stats()["unheard"] == 0
    assert listener.stats()["missing"] == 0
    publisher.close()


def test_message_received_over_zeromq_and_republished_to_redis_is_bit_identical(
        redis_server, runtimes, ipc):
    address = ipc()
    source = ZmqPublisher("@" + address, linger_ms=0)
    source.open()
    # The publisher-service arrangement: ZeroMQ in, Redis stream out.
    bridge = runtimes(ZmqListener(">" + address),
                      publishers=[RedisStreamPublisher(redis_server.url(), stream="bridged")])
    reader = runtimes(RedisStreamListener(redis_server.url(), stream="bridged", group="g",
                                          consumer="c1"))
    sent = every_kind()
    for message in sent:
        source.publish(message)
    received = reader.wait_for(len(sent))
    assert_all_same(sent, received)
    assert bridge.runtime.stats()["outputs"][0]["sent"] == len(sent)
    source.close()


def test_entries_stay_pending_until_the_runtime_has_handled_them(redis_server):
    publisher = RedisStreamPublisher(redis_server.url(), stream="frames")
    publisher.open()
    for frame in range(20):
        publisher.publish(Event({"frame": frame}, {"x": np.full(4, frame)}))
    listener = RedisStreamListener(redis_server.url(), stream="frames", group="g",
                                   consumer="c1", block_ms=20)
    operator, sink = HoldingOperator(hold=5), CollectingSink()
    runtime = Runtime(listener, operator, [sink])
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        assert operator.reached.wait(10)
        client = redis_server.client()
        # Frames 0-4 are handled and get acknowledged; 5 is in the operator, 6-19 were
        # delivered (queued) but not handled: those must stay pending.
        wait_for(lambda: listener.stats()["redis"]["acked"] == 5, 5, "5 acknowledgements")
        pending = client.xpending_range("frames", "g", "-", "+", 100)
        assert len(pending) == 15
        operator.release.set()
        wait_for(lambda: listener.stats()["redis"]["acked"] == 20, 5, "20 acknowledgements")
        assert client.xpending("frames", "g")["pending"] == 0
        assert [m.meta["frame"] for m in sink.messages] == list(range(20))
    finally:
        operator.release.set()
        runtime.stop()
        thread.join(10)
        publisher.close()


def test_malformed_entries_are_counted_acknowledged_and_skipped(redis_server, runtimes):
    client = redis_server.client()
    publisher = RedisStreamPublisher(redis_server.url(), stream="frames")
    publisher.open()
    publisher.publish(Start({"run": "r"}))
    client.xadd("frames", {"json": '{"not": "arroyo"}'})
    client.xadd("frames", {"v": "1", "h": b"\xc1 not msgpack"})
    client.xadd("frames", {"v": "1", "h": b"\x81\xa1v\x02"})  # {"v": 2}
    publisher.publish(Stop({"run": "r"}))
    listener = RedisStreamListener(redis_server.url(), stream="frames", group="g",
                                   consumer="c1")
    running = runtimes(listener)
    assert [m.kind for m in running.wait_for(2)] == ["start", "stop"]
    wait_for(lambda: client.xpending("frames", "g")["pending"] == 0, 5,
             "malformed entries to be acknowledged out of the way")
    assert listener.stats()["malformed"] == {"carriage": 1, "msgpack": 1, "version": 1}

    channel_listener = RedisPubSubListener(redis_server.url(), channel="live")
    live = runtimes(channel_listener)
    wait_for(lambda: dict(client.pubsub_numsub("live"))[b"live"] == 1, 5, "a subscriber")
    client.publish("live", b"hello, not arroyo")
    client.publish("live", b"ARF\x01" + bytes(4))
    pubsub = RedisPubSubPublisher(redis_server.url(), channel="live")
    pubsub.open()
    pubsub.publish(Start({"run": "r"}))
    assert [m.kind for m in live.wait_for(1)] == ["start"]
    assert channel_listener.stats()["malformed"] == {"carriage": 2}
    publisher.close()
    pubsub.close()


def test_url_password_and_database_are_used_and_a_wrong_password_fails_at_open(redis_server):
    publisher = RedisStreamPublisher(redis_server.url(db=5), stream="in-db-5")
    publisher.open()
    publisher.publish(Start())
    assert redis.Redis.from_url(redis_server.url(db=5)).exists("in-db-5")
    assert not redis.Redis.from_url(redis_server.url(db=0)).exists("in-db-5")
    assert PASSWORD not in str(publisher.stats()) and "***" in publisher.stats()["link"]
    publisher.close()
    for url in (redis_server.url(password="wrong"), redis_server.url(password=None)):
        listener = RedisStreamListener(url, stream="s", group="g")
        with pytest.raises(ConfigError, match="credentials|NOAUTH|Authentication"):
            listener.open()
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisPubSubPublisher("http://example.org", channel="c")


def test_stream_outage_drop_drops_events_and_a_start_waits_until_abandoned(tmp_path):
    server = RedisServer(tmp_path)  # a free port with nothing listening
    publisher = RedisStreamPublisher(server.url(), stream="s", outage="drop", max_backoff=0.2)
    publisher.open()  # no exception: it will keep trying
    for frame in range(3):
        publisher.publish(Event({"frame": frame}, {}))
    assert publisher.stats()["dropped"] == {"redis unavailable": 3}
    # A Start is not dropped by the policy (a lost one corrupts the run): it waits for
    # Redis until the runtime abandons it at shutdown. Drops take no seq on a stream.
    starting = threading.Thread(target=publisher.publish, args=(Start(),), daemon=True)
    starting.start()
    starting.join(0.5)  # (bounded: it must still be waiting, not be done)
    assert starting.is_alive()
    publisher.abandon()
    starting.join(5)
    assert not starting.is_alive()
    stats = publisher.stats()
    assert stats["dropped"] == {"redis unavailable": 3, "redis unavailable until shutdown": 1}
    assert stats["sent"] == 0 and stats["next_seq"] == 0
    publisher.close()


def test_links_started_while_redis_is_down_count_and_then_connect(tmp_path, runtimes):
    skip_unless(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = RedisServer(tmp_path)  # a free port with nothing listening yet
    try:
        dropping = RedisPubSubPublisher(server.url(), channel="c", max_backoff=0.2)
        dropping.open()  # no exception: it will keep trying
        began = time.monotonic()
        for _ in range(5):
            dropping.publish(Start())
        assert time.monotonic() - began < 2
        assert dropping.stats()["dropped"] == {"redis unavailable": 5}
        assert dropping.stats()["redis"]["outages"] == 1

        listener = RedisStreamListener(server.url(), stream="s", group="g", consumer="c1",
                                       max_backoff=0.2)
        running = runtimes(listener)
        wait_for(lambda: listener.stats()["redis"]["failed_attempts"] >= 2, 5, "retries")
        server.start()
        waiting = RedisStreamPublisher(server.url(), stream="s")
        waiting.open()
        waiting.publish(Start({"run": "late"}))
        assert running.wait_for(1)[0].meta == {"run": "late"}
        assert listener.stats()["redis"]["connected"] is True
        dropping.publish(Stop())  # its back-off is over: Redis is reachable again
        wait_for(lambda: dropping.stats()["sent"] == 1, 5, "the dropping publisher to send")
        waiting.close()
        dropping.close()
    finally:
        running.stop()
        server.stop()



def test_kill_9_of_stream_listener_service_loses_no_acknowledged_message(
        redis_server, service, feeder, ipc, zmq_socket, tmp_path):
    frames, url = 1500, redis_server.url()
    to_bridge, to_sink = ipc(), ipc()
    sink = FrameSink(zmq_socket, to_sink, [])
    start = sink.starter(service)
    config = tmp_path / "redis-listener.toml"  # the listener runs from a config file
    config.write_text(
        f'source = "redis-stream"\nout = ">{to_sink}"\n'
        f'[options]\nurl = "{url}"\nstream = "frames"\ngroup = "g"\nconsumer = "c1"\n'
        f'max_backoff = 0.5\n')
    listener = start("listener", "-c", str(config), name="redis-listener")
    start("publisher", "--in", ">" + to_bridge, "--sink", "redis-stream", "-o", f"url={url}",
            "-o", "stream=frames", "-o", "maxlen=100000", name="redis-publisher")
    feeder(to_bridge, frames, rate=1000)

    sink.pump(lambda: sum(sink.frames.values()) >= 300, 20, "300 frames before the kill")
    listener.signal(signal.SIGKILL)
    listener.process.wait(5)
    client = redis_server.client()
    acked = acknowledged(client, "frames", "g")
    entries = redis_entries(client, "frames")
    acked_frames = {entries[i][1] for i in acked if entries[i][0] == "event"}
    written_at_kill = sum(kind == "event" for kind, _ in entries.values())
    assert acked_frames and written_at_kill < frames, "the kill did not land mid-run"

    start("listener", "-c", str(config), name="redis-listener-2")
    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop after the restart")
    assert sink.stop_meta["frames_sent"] == frames
    missing = [f for f in range(frames) if sink.frames[f] == 0]
    twice = sorted(f for f in acked_frames if sink.frames[f] != 1)
    assert not missing, f"frames never processed: {missing[:20]}"
    assert not twice, f"acknowledged before the kill, processed other than once: {twice[:20]}"
    assert sink.kinds["start"] == 1
    duplicates = sum(sink.frames.values()) - frames  # unacknowledged ones read again
    print(f"acknowledged before the kill: {len(acked_frames)} frames; "
          f"delivered twice: {duplicates}")
    wait_for(lambda: client.xpending("frames", "g")["pending"] == 0, 5, "the last XACKs")


def test_redis_restart_mid_run_stream_services_reconnect_and_the_stream_completes(
        redis_server, service, feeder, ipc, zmq_socket):
    frames, url = 1200, redis_server.url()
    to_bridge, to_sink, bridge_stats, listener_stats = ipc(), ipc(), ipc(), ipc()
    sink = FrameSink(zmq_socket, to_sink, [])
    start = sink.starter(service)
    start("listener", "--source", "redis-stream", "-o", f"url={url}", "-o", "stream=frames",
            "-o", "group=g", "-o", "consumer=c1", "-o", "max_backoff=0.3",
            "--out", ">" + to_sink, "--stats", listener_stats, name="redis-listener")
    start("publisher", "--in", ">" + to_bridge, "--sink", "redis-stream", "-o", f"url={url}",
            "-o", "stream=frames", "-o", "max_backoff=0.3", "--stats", bridge_stats,
            name="redis-publisher")
    feeder(to_bridge, frames, rate=600)

    sink.pump(lambda: sum(sink.frames.values()) >= 300, 20, "300 frames before the restart")
    redis_server.restart()
    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop after the restart")
    assert sink.stop_meta["frames_sent"] == frames
    assert [f for f in range(frames) if sink.frames[f] != 1] == []
    bridge = query_status(bridge_stats)["outputs"][0]
    assert bridge["redis"]["outages"] >= 1 and bridge["dropped"] == {}
    assert bridge["sent"] == frames + 2
    reader = query_status(listener_stats)["input"]
    assert reader["redis"]["outages"] >= 1
    assert reader["missing"] == 0 and reader["malformed"] == {}


def test_redis_restart_mid_run_pubsub_losses_are_reported(
        redis_server, service, feeder, ipc, zmq_socket):
    frames, url = 1200, redis_server.url()
    to_bridge, to_sink, bridge_stats, listener_stats = ipc(), ipc(), ipc(), ipc()
    sink = FrameSink(zmq_socket, to_sink, [])
    start = sink.starter(service)
    start("listener", "--source", "redis-pubsub", "-o", f"url={url}", "-o", "channel=live",
            "-o", "max_backoff=0.2", "--out", ">" + to_sink, "--stats", listener_stats,
            name="pubsub-listener")
    start("publisher", "--in", ">" + to_bridge, "--sink", "redis-pubsub", "-o", f"url={url}",
            "-o", "channel=live", "-o", "subscribers=1", "-o", "max_backoff=0.2",
            "--stats", bridge_stats, name="pubsub-publisher")
    feeder(to_bridge, frames, rate=600)

    sink.pump(lambda: sum(sink.frames.values()) >= 300, 20, "300 frames before the restart")
    redis_server.restart()
    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop after the restart")
    received = sum(sink.frames.values())
    lost = frames - received
    bridge = query_status(bridge_stats)["outputs"][0]
    reader = query_status(listener_stats)["input"]
    print(f"pub/sub outage: {lost} of {frames} frames lost; publisher dropped "
          f"{bridge['dropped']}, subscriber missing {reader['missing']}")
    assert lost > 0, "the outage should have cost messages on pub/sub"
    # The publisher counts what it could not publish; every attempt took a seq number,
    # so the subscriber's ledger sees every loss (the publisher's and its own) as a gap.
    assert bridge["dropped"].get("redis unavailable", 0) >= 1
    assert bridge["sent"] + sum(bridge["dropped"].values()) == bridge["next_seq"] == frames + 2
    assert reader["missing"] == lost
    assert reader["received"] + reader["missing"] == bridge["next_seq"]
    assert reader["missing"] >= sum(bridge["dropped"].values())
    assert reader["redis"]["outages"] >= 1 and reader["redis"]["subscriptions"] >= 2
