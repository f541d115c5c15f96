"""Redis as a transport chosen by address, in chains of real service processes:
``--in``/``--out redis://...?stream=NAME`` (or ``?channel=NAME``) next to ZeroMQ hops.

The oracle shares no code with Arroyo's ledger: the frame numbers the last hop received,
read with a raw PULL socket (or from the stream's raw entries) and ``wire.decode``,
against the frame numbers the source sent. The services' own ledgers must then report
exactly that loss (none).
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest

from services.status_server import query_status
from tests.support.chain_ends import FrameSink
from tests.support.ledgers import final_ledger
from tests.support.waiting import exit_within, wait_for

redis = pytest.importorskip("redis")
from tests.support.redis_server import PASSWORD, redis_entries  # noqa: E402

pytestmark = pytest.mark.integration

FRAMES = 500


def simulated_source(url: str, frames: int = FRAMES) -> list[str]:
    """Arguments of a listener service sending one run of small frames to ``url``."""
    return ["--source", "simulated", "-o", f"frames={frames}", "-o", "rate=2000",
            "-o", "shape=[16,16]", "--out", url]


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def assert_input_lost_nothing(ledger: dict[str, Any], messages: int) -> None:
    assert ledger["received"] == messages
    assert (ledger["missing"], ledger["duplicates"], ledger["malformed"]) == (0, 0, {})


def assert_output_lost_nothing(ledger: dict[str, Any], messages: int) -> None:
    assert ledger["sent"] == messages and ledger["dropped"] == {}


def assert_sink_got_every_frame_once(sink: FrameSink, frames: int) -> None:
    assert sink.stop_meta is not None and sink.stop_meta["frames_sent"] == frames
    assert sink.frames == Counter(range(frames))
    assert sink.kinds == Counter({"start": 1, "event": frames, "stop": 1})


def test_operator_reads_a_redis_stream_address_and_sends_over_zeromq(
        redis_server, service, ipc, zmq_socket):
    url, to_sink, operator_status = redis_server.url(), ipc(), ipc()
    sink = FrameSink(zmq_socket, ">" + to_sink, [])
    start = sink.starter(service)
    operator = start("operator", "--in", f"{url}?stream=frames&group=g&consumer=op",
                     "--out", "@" + to_sink, "--stats", operator_status, name="operator")
    source = start("listener", *simulated_source(f"{url}?stream=frames&maxlen=0"),
                   name="source")

    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop at the sink")
    assert_sink_got_every_frame_once(sink, FRAMES)
    client = redis_server.client()
    written = Counter(frame for kind, frame in redis_entries(client, "frames").values()
                      if kind == "event")
    assert written == Counter(range(FRAMES))  # the stream itself, read raw

    assert exit_within(source, 20) == 0
    assert_output_lost_nothing(final_ledger(source)["outputs"][0], FRAMES + 2)
    wait_for(lambda: query_status(operator_status)["input"]["redis"]["acked"] == FRAMES + 2,
             5, "every entry to be acknowledged")
    assert client.xpending("frames", "g")["pending"] == 0
    ledger = query_status(operator_status)
    assert_input_lost_nothing(ledger["input"], FRAMES + 2)
    assert ledger["input"]["unhandled"] == 0
    assert ledger["input"]["link"].startswith("input stream 'frames' group 'g' at redis://")
    assert_output_lost_nothing(ledger["outputs"][0], FRAMES + 2)
    assert_no_password(str(ledger), operator.output(), source.output())


def test_operator_reads_zeromq_and_writes_a_redis_stream_address(
        redis_server, service, feeder, ipc):
    url, to_operator, operator_status = redis_server.url(), ipc(), ipc()
    operator = service("operator", "--in", ">" + to_operator,
                       "--out", f"{url}?stream=out&maxlen=0", "--stats", operator_status,
                       name="operator")
    source = feeder(to_operator, FRAMES, rate=2000)
    client = redis_server.client()

    def entries() -> dict[bytes, tuple[str, int | None]]:
        return redis_entries(client, "out") if client.exists("out") else {}

    wait_for(lambda: any(kind == "stop" for kind, _ in entries().values()), 30,
             "the run's Stop in the stream")
    written = list(entries().values())
    assert [kind for kind, _ in written] == ["start"] + ["event"] * FRAMES + ["stop"]
    assert [frame for kind, frame in written if kind == "event"] == list(range(FRAMES))

    assert_output_lost_nothing(source.publisher.stats(), FRAMES + 2)
    ledger = query_status(operator_status)
    assert_input_lost_nothing(ledger["input"], FRAMES + 2)
    assert_output_lost_nothing(ledger["outputs"][0], FRAMES + 2)
    assert ledger["outputs"][0]["link"].startswith("output stream 'out' at redis://:***@")
    assert_no_password(str(ledger), operator.output())


def test_pubsub_addresses_between_a_source_and_an_operator(
        redis_server, service, ipc, zmq_socket):
    url, to_sink, operator_status = redis_server.url(), ipc(), ipc()
    sink = FrameSink(zmq_socket, ">" + to_sink, [])
    start = sink.starter(service)
    start("operator", "--in", f"{url}?channel=live", "--out", "@" + to_sink,
          "--stats", operator_status, name="operator")
    # subscribers=1: the source's run starts once the operator has subscribed
    source = start("listener", *simulated_source(f"{url}?channel=live&subscribers=1"),
                   name="source")

    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop at the sink")
    assert_sink_got_every_frame_once(sink, FRAMES)
    assert exit_within(source, 20) == 0
    sent = final_ledger(source)["outputs"][0]
    assert_output_lost_nothing(sent, FRAMES + 2)
    assert sent["unheard"] == 0 and sent["next_seq"] == FRAMES + 2
    ledger = query_status(operator_status)
    assert_input_lost_nothing(ledger["input"], FRAMES + 2)
    assert_output_lost_nothing(ledger["outputs"][0], FRAMES + 2)


def test_a_redis_address_names_exactly_one_of_stream_and_channel(redis_server, service):
    url = redis_server.url()
    for query, says in (("", "neither"), ("?stream=a&channel=b", "stream and channel")):
        checked = service("operator", "--in", url + query, "--out", "@tcp://127.0.0.1:*",
                          "--check", name="check", ready=False)
        assert checked.process.wait(20) == 2
        assert "exactly one of ?stream=NAME" in checked.output() and says in checked.output()
        assert_no_password(checked.output())
