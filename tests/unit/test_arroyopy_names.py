"""The design's names as one set of classes, arroyopy's blocks: format read as data, and
the adapters that run arroyopy plug-ins in a Runtime (in one process, no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from arroyo_core import (
    CollectingSink,
    Event,
    InputLink,
    OutputLink,
    RedisListener,
    RedisPublisher,
    Runtime,
    Start,
    Stop,
    ZMQListener,
    ZMQPublisher,
    ZMQPubSubListener,
    ZMQPubSubPublisher,
)
from arroyo_core.arroyopy_plugins import to_message
from arroyo_core.errors import ConfigError
from arroyo_core.transports.redis import RedisStreamListener, RedisStreamPublisher
from services.blocks import build_runtime, check_block, load_blocks

arroyopy = pytest.importorskip("arroyopy")


def test_data_and_metadata_are_meta_by_another_name():
    start, stop = Start(data={"run": 1}), Stop(data={"frames_sent": 3})
    event = Event(metadata={"frame": 0}, payload={"a": np.zeros(2)})
    assert start.meta == {"run": 1} and start.data is start.meta
    assert stop.data is stop.meta and event.metadata is event.meta
    start.data["sample"] = "Si"
    assert start.meta["sample"] == "Si"
    event.metadata = {"frame": 1}
    assert event.meta == {"frame": 1}
    assert Start({"a": 1}).data == {"a": 1} and Event({"f": 2}).metadata == {"f": 2}
    with pytest.raises(TypeError, match="not both"):
        Start({"a": 1}, data={"b": 2})


def test_design_links_are_the_link_step_with_their_pattern():
    cases = [(ZMQPublisher("*", 5555), OutputLink, "@tcp://*:5555", "push"),
             (ZMQPubSubPublisher("127.0.0.1", "5556"), OutputLink, "@tcp://127.0.0.1:5556",
              "pub"),
             (ZMQListener("h", 5555), InputLink, ">tcp://h:5555", "pull"),
             (ZMQPubSubListener("h", 5556, bind=True), InputLink, "@tcp://h:5556", "sub"),
             (ZMQListener("ipc:///tmp/x"), InputLink, ">ipc:///tmp/x", "pull")]
    for link, base, address, pattern in cases:
        assert isinstance(link, base) and str(link.status().address) == address
        assert link.status().pattern == pattern
    assert issubclass(RedisListener, RedisStreamListener)
    assert RedisPublisher is RedisStreamPublisher


def test_a_listener_of_a_socket_you_made_takes_its_pattern_and_address():
    context = zmq.Context()
    try:
        pull, sub, push = (context.socket(kind) for kind in (zmq.PULL, zmq.SUB, zmq.PUSH))
        pull.connect("tcp://127.0.0.1:5999")
        sub.bind("ipc:///tmp/arroyo-from-socket-test")
        operator = object()
        for link, pattern in [(ZMQListener.from_socket(pull), "pull"),
                              (ZMQListener(operator, sub), "sub")]:
            assert link.status().pattern == pattern
        assert ZMQListener(operator, sub).operator is operator
        assert str(ZMQListener(pull).status().address) == ">tcp://127.0.0.1:5999"
        with pytest.raises(ConfigError, match="PULL or SUB socket, not on a PUSH"):
            ZMQListener(push)
        with pytest.raises(ConfigError, match="bind or connect the socket"):
            ZMQListener(context.socket(zmq.PULL))
    finally:
        context.destroy(linger=0)


def test_redis_links_take_a_redis_py_client_for_the_url():
    import redis
    import redis.asyncio

    clients = [(redis.Redis(host="h", port=7000, db=2), "redis://h:7000/2"),
               (redis.asyncio.Redis(host="h", password="p w@", username="u", ssl=True),
                "rediss://u:***@h:6379/0")]
    for client, shown in clients:
        listener = RedisListener(client, "frames", "the operator")
        assert listener.operator == "the operator"
        assert str(listener.status().address).lstrip("@>") == shown
        assert str(RedisPublisher(client, "frames").status().address).lstrip("@>") == shown
    with pytest.raises(ConfigError, match="redis-py client on a TCP address"):
        RedisListener(redis.Redis(unix_socket_path="/tmp/r.sock"), "frames")


def test_what_arroyopy_plugins_hand_on_becomes_a_message():
    class Frame(arroyopy.schemas.Event):
        model_config = {"arbitrary_types_allowed": True}
        frame: int
        image: np.ndarray

    class Begin(arroyopy.schemas.Start):
        run: str

    event = to_message(Frame(frame=3, image=np.ones(2)))
    assert event.kind == "event" and event.meta == {"frame": 3}
    assert np.array_equal(event.payload["image"], np.ones(2))
    assert to_message(Begin(run="r")).kind == "start"
    assert to_message(b"raw").payload == {"data": b"raw"}
    with pytest.raises(TypeError, match="cannot send a str"):
        to_message("text")


def test_an_arroyopy_operator_listener_and_publisher_run_in_a_runtime(monkeypatch):
    monkeypatch.syspath_prepend("tests/support/user_packages")
    from arroyo_testplugins.arroyopy_style import ScaleOperator

    from arroyo_core import registry

    listener = registry.build("listener", "arroyo_testplugins.arroyopy_style:FrameListener",
                              {"frames": 6}, "t")
    printer = registry.build("publisher", "arroyo_testplugins.arroyopy_style:PrintPublisher",
                             {}, "t")
    sink = CollectingSink()
    runtime = Runtime(listener, ScaleOperator(factor=4.0), [sink, printer])
    runtime.run()
    kinds = [message.kind for message in sink.messages]
    assert kinds == ["start"] + ["event"] * 6 + ["stop"]
    assert [e.payload["image"][0, 0] for e in sink.messages[1:-1]] == [4.0 * f for f in range(6)]
    assert all(e.metadata["started"] for e in sink.messages[1:-1])  # its start() ran first
    assert printer.sent == 8 and runtime.status().operator.events_out == 6


def test_a_block_with_two_listeners_runs_both_into_its_operator(tmp_path, monkeypatch):
    """arroyopy gives each listener of a block the block's operator: both runs arrive whole,
    and the input's record counts both listeners."""
    monkeypatch.syspath_prepend("tests/support/user_packages")
    style = "arroyo_testplugins.arroyopy_style"
    (block,) = load_blocks(_file(tmp_path, f"""
name: two
operator: {{class: {style}.ScaleOperator, kwargs: {{factor: 1.0}}}}
listeners:
  - {{class: {style}.FrameListener, kwargs: {{frames: 3, run: a}}}}
  - {{class: {style}.FrameListener, kwargs: {{frames: 5, run: b}}}}
publishers: [{{class: arroyo_core.CollectingSink}}]
"""))
    runtime = build_runtime(block)
    runtime.run()
    (sink,) = runtime.publishers
    for run, frames in (("a", 3), ("b", 5)):
        mine = [m for m in sink.messages if m.meta.get("run") == run]
        assert [m.kind for m in mine] == ["start"] + ["event"] * frames + ["stop"], run
        assert [e.metadata["frame"] for e in mine[1:-1]] == list(range(frames))
    record = runtime.status().input
    assert record.received == (3 + 2) + (5 + 2) and len(record.transport["inputs"]) == 2


def _file(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


ONE = """
name: only
operator: {class: arroyo_core.PassThrough}
listeners: [{class: arroyo_core.ZMQListener, args: [127.0.0.1, 5999]}]
publishers: [{class: arroyo_core.ZMQPublisher, kwargs: {host: "*", port: 5998}}]
"""


def test_a_block_at_the_top_level_and_its_class_paths(tmp_path):
    (block,) = load_blocks(_file(tmp_path, ONE))
    assert block.name == "only" and block.operator.spec == "arroyo_core:PassThrough"
    assert block.listeners[0].args == ("127.0.0.1", 5999)
    check_block(block)


@pytest.mark.parametrize("text, error", [
    (ONE + "colour: red\n", "block 'only': unknown key 'colour'"),
    (ONE.replace("{class: arroyo_core.PassThrough}", "{class: arroyo_core.PassThrough, "
                 "kw: {}}"), "block 'only' operator: unknown key 'kw'"),
    ("blocks: [{name: a, operator: {class: x.Y}, listeners: []}]", "at least one listener"),
    ("blocks: []\nextra: 1\n", "unknown top-level key 'extra'"),
    (ONE + "drain_timeout: soon\n", "block 'only': 'drain_timeout' must be a number"),
    ("blocks:\n" + "".join("  - {name: only, operator: {class: a.B}, listeners: "
                            "[{class: c.D}]}\n" for _ in range(2)),
     "two blocks are named 'only'"),
])
def test_a_wrong_block_is_an_error_that_names_it(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[")):
        load_blocks(_file(tmp_path, text))


def test_a_bad_class_or_argument_names_the_block_and_part(tmp_path):
    (block,) = load_blocks(_file(tmp_path, ONE.replace("ZMQPublisher", "NoSuch")))
    with pytest.raises(ConfigError, match=r"block 'only' publishers\[0\]\.class"):
        check_block(block)
    (block,) = load_blocks(_file(tmp_path, ONE.replace("PassThrough}", "PassThrough, "
                                                       "kwargs: {porrt: 1}}")))
    with pytest.raises(ConfigError, match=r"block 'only' operator: .*porrt"):
        check_block(block)


def test_check_constructs_nothing(tmp_path, monkeypatch):
    constructed = []
    monkeypatch.setattr(ZMQPublisher, "__init__",
                        lambda self, host, port=None, **kw: constructed.append(host))
    (block,) = load_blocks(_file(tmp_path, ONE))
    check_block(block)
    assert constructed == []


def test_environment_variables_are_filled_in(tmp_path, monkeypatch):
    monkeypatch.setenv("IN_PORT", "6001")
    monkeypatch.delenv("NOT_SET", raising=False)
    text = ONE.replace("5999", "${IN_PORT}").replace("5998", "${OUT_PORT:-6002}")
    (block,) = load_blocks(_file(tmp_path, text))
    assert block.listeners[0].args == ("127.0.0.1", 6001)
    assert block.publishers[0].kwargs["port"] == 6002
    with pytest.raises(ConfigError, match="NOT_SET is not set"):
        load_blocks(_file(tmp_path, ONE.replace("5999", "$NOT_SET")))


def test_stopping_the_runtime_awaits_an_arroyopy_listeners_stop(monkeypatch):
    monkeypatch.syspath_prepend("tests/support/user_packages")
    import threading

    from arroyo_core import PassThrough, registry
    from tests.support.waiting import wait_for

    listener = registry.build("listener", "arroyo_testplugins.arroyopy_style:FrameListener",
                              {"frames": 10**9}, "t")
    sink = CollectingSink()
    runtime = Runtime(listener, PassThrough(), [sink], drain_timeout=5)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    wait_for(lambda: runtime.processed > 10, 10, "frames flowing")
    runtime.stop()
    thread.join(10)
    assert not thread.is_alive() and runtime.listener_error is None
    assert listener.inner.stop_requested  # its async stop() was awaited
    assert sink.messages[-1].kind == "stop"  # and its start() ended the run itself
