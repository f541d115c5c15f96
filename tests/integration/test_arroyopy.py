"""For arroyopy users, with real processes and sockets: the design's names round-trip a run
through a service; a ``blocks:`` pipeline file runs (each block a process) and validates;
plug-ins written against arroyopy 0.2.2's own base classes run unchanged in a chain's
listener and operator services, with the ledger exact."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq
import zmq.asyncio

from arroyo_core import Event, Start, Stop, ZMQListener, ZMQPublisher
from services.processes import ServiceProcess, free_port
from tests.support.ledgers import final_ledger, logged_ledger, status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytest.importorskip("arroyopy")  # the [arroyopy] extra (in dev): arroyopy 0.2.2 from PyPI
pytestmark = pytest.mark.integration

PLUGINS = "arroyo_testplugins.arroyopy_style"


def _far_end(how: str, port: int, context: zmq.asyncio.Context) -> ZMQListener:
    """The last hop's listener, made as arroyopy users make theirs."""
    if how == "host-port":
        return ZMQListener("127.0.0.1", port)  # connects, PULL
    socket = context.socket(zmq.PULL)  # an asyncio socket, as arroyopy's examples make
    socket.connect(f"tcp://127.0.0.1:{port}")
    if how == "from-socket":
        return ZMQListener.from_socket(socket)
    return ZMQListener(object(), socket)  # arroyopy's ZMQListener(operator, zmq_socket)


@pytest.mark.parametrize("how", ["host-port", "from-socket", "operator-socket"])
def test_design_names_round_trip_a_run_through_a_service(service, ipc, how):
    hop1, hop2 = free_port(), free_port()
    source = ZMQPublisher("127.0.0.1", hop1)  # binds tcp://127.0.0.1:hop1, PUSH
    source.open()
    stats = ipc()
    service("operator", "--in", f">tcp://127.0.0.1:{hop1}", "--out",
            f"@tcp://127.0.0.1:{hop2}", "--status", stats, name="op")
    context = zmq.asyncio.Context()
    sink = _far_end(how, hop2, context)
    sink.open()
    got: list = []
    thread = threading.Thread(target=sink.start, args=(got.append,), daemon=True)
    thread.start()
    try:
        image = np.arange(6, dtype="<u2").reshape(2, 3)
        source.publish(Start(data={"run": "d", "sample": "Si"}))
        for frame in range(5):
            source.publish(Event(metadata={"run": "d", "frame": frame}, payload={"im": image}))
        source.publish(Stop(data={"run": "d", "frames_sent": 5}))
        wait_for(lambda: len(got) == 7, 20, "the run at the far end")
    finally:
        sink.stop()
        thread.join(5)
        sink.close()  # closes a socket it was given too
        context.term()
        source.close()
    assert [m.kind for m in got] == ["start"] + ["event"] * 5 + ["stop"]
    assert got[0].data == {"run": "d", "sample": "Si"} and got[0].data is got[0].meta
    assert [e.metadata["frame"] for e in got[1:6]] == list(range(5))
    assert all(np.array_equal(e.payload["im"], image) for e in got[1:6])
    assert got[-1].data["frames_sent"] == 5
    assert status(stats)["operator"]["events_out"] == 5
    record = sink.ledger.status()
    assert (record.received, record.missing, record.duplicates) == (7, 0, 0)


def _pipeline(tmp_path, ipc, frames: int) -> tuple[str, int, dict[str, str]]:
    hop1, hop2 = free_port(), free_port()
    stats = {"make": ipc("make.status"), "scale": ipc("scale.status")}
    text = f"""
blocks:
  - name: make
    description: arroyopy listener and operator, Arroyo publisher
    operator:
      class: {PLUGINS}.ScaleOperator
      kwargs: {{factor: 2.0}}
    listeners:
      - class: {PLUGINS}.FrameListener
        kwargs: {{frames: {frames}, run: b1}}
    publishers:
      - class: arroyo_core.ZMQPublisher
        args: [127.0.0.1, {hop1}]
    status: {stats['make']}
  - name: scale
    description: Arroyo listener, arroyopy operator and publisher
    operator:
      class: {PLUGINS}.ScaleOperator
      kwargs: {{factor: ${{FACTOR:-0.5}}}}
    listeners:
      - class: arroyo_core.ZMQListener
        kwargs: {{host: 127.0.0.1, port: {hop1}}}
    publishers:
      - class: arroyo_core.ZMQPublisher
        args: [127.0.0.1, {hop2}]
      - class: {PLUGINS}.PrintPublisher
        kwargs: {{prefix: printed}}
    status: {stats['scale']}
"""
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path), hop2, stats


def _arroyo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **plugin_env()})


def test_a_two_block_pipeline_file_validates_lists_and_runs(tmp_path, ipc, receiver,
                                                             run_chain):
    frames = 40
    path, hop2, stats = _pipeline(tmp_path, ipc, frames)
    checked = _arroyo("validate", path)
    assert checked.returncode == 0, checked.stderr
    assert "Found 2 block(s)" in checked.stdout and "Configuration is valid" in checked.stdout
    listed = _arroyo("list-blocks", path)
    assert listed.returncode == 0, listed.stderr
    assert "1. make" in listed.stdout and "2. scale" in listed.stdout

    out = receiver(f">tcp://127.0.0.1:{hop2}")
    run = run_chain(path, plugin_env())  # (the fixture ends it if an assertion fails)
    got = out.take(frames + 2, timeout=40)
    assert [m.kind for m in got] == ["start"] + ["event"] * frames + ["stop"]
    for frame, event in enumerate(got[1:-1]):
        assert event.metadata["frame"] == frame and event.metadata["factor"] == 0.5
        assert np.array_equal(event.payload["image"], np.full((4, 4), frame, "<f4"))
    # (counted once every publisher has it; the far end may be first)
    wait_for(lambda: status(stats["scale"])["operator"]["processed"] == frames + 2, 10,
             "the Stop counted")
    ledger = status(stats["scale"])
    assert ledger["input"]["received"] == frames + 2
    assert ledger["operator"]["events_in"] == ledger["operator"]["events_out"] == frames
    assert ledger["operator"]["errors"] == {}
    assert ledger["outputs"][0]["sent"] == ledger["outputs"][1]["sent"] == frames + 2
    assert run.stop(40) == 0, run.text()[-3000:]
    output = run.text()
    assert "exit codes make 0, scale 0" in output
    assert output.count("printed event") == frames  # the arroyopy publisher got each one
    assert "ScaleOperator stopped (factor 0.5)" in output  # its async stop() ran
    made = logged_ledger("\n".join(line.partition("] ")[2] for line in output.splitlines()
                                   if line.lstrip().startswith("[make]")))
    assert made["operator"]["events_out"] == frames and made["outputs"][0]["sent"] == frames + 2


def _broken(text: str, wrong: str) -> str:
    head, _, tail = text.partition("  - name: scale")
    if wrong == "key":
        head = head.replace("    description:", "    colour: red\n    description:", 1)
    else:
        tail = tail.replace("arroyo_core.ZMQPublisher", "arroyo_core.NoSuchPublisher", 1)
    return head + "  - name: scale" + tail


@pytest.mark.parametrize("wrong, named", [
    ("key", "block 'make': unknown key 'colour'"),
    ("class", "block 'scale' publishers[0].class: publisher 'arroyo_core:NoSuchPublisher'"),
])
def test_validate_names_the_block_and_key_that_is_wrong(tmp_path, ipc, wrong, named):
    path, _, _ = _pipeline(tmp_path, ipc, 5)
    with open(path) as file:
        text = _broken(file.read(), wrong)
    with open(path, "w") as file:
        file.write(text)
    for command in ("validate", "run"):
        checked = _arroyo(command, path)
        assert checked.returncode == 2, checked
        assert named in checked.stderr, checked.stderr


def test_arroyopy_plugins_run_unchanged_in_a_chain_with_the_ledger_exact(tmp_path, ipc):
    frames = 200
    hop1, hop2 = free_port(), free_port()
    stats = {name: ipc(f"{name}.status") for name in ("source", "operator", "sink")}
    chain = tmp_path / "chain.toml"
    chain.write_text(f"""
name = "ap"

[services.source]
role = "listener"
source = "{PLUGINS}:FrameListener"
options = {{ frames = {frames}, run = "c1", shape = [8, 8] }}
out = "@tcp://127.0.0.1:{hop1}"
status = "{stats['source']}"

[services.operator]
role = "operator"
operator = "{PLUGINS}:ScaleOperator"
options = {{ factor = 3.0 }}
in = ">tcp://{{source}}:{hop1}"
out = "@tcp://127.0.0.1:{hop2}"
status = "{stats['operator']}"

[services.sink]
role = "publisher"
sink = "stats"
options = {{ interval = 0 }}
in = ">tcp://{{operator}}:{hop2}"
status = "{stats['sink']}"
""")
    env = plugin_env()
    started = {name: ServiceProcess.from_argv(["service", str(chain), name], name, env=env)
               for name in ("sink", "operator", "source")}
    try:
        for process in started.values():
            process.wait_ready(30)

        def run_done():
            runs = status(stats["sink"])["outputs"][0]["runs"]
            return runs and runs[-1].get("complete")

        wait_for(run_done, 40, "the sink to see the run end")
        sink = status(stats["sink"])["outputs"][0]["runs"][-1]
        assert sink["frames"] == frames and sink["lost"] == 0, sink
        operator = status(stats["operator"])
        assert operator["operator"]["type"] == "ArroyopyOperator"
        assert operator["operator"]["events_in"] == operator["operator"]["events_out"] == frames
        assert operator["operator"]["errors"] == {} and operator["operator"]["failed"] == 0
        assert operator["input"]["received"] == operator["outputs"][0]["sent"] == frames + 2
    finally:
        codes = {name: process.stop(20) for name, process in started.items()}
    assert codes["operator"] == 0, started["operator"].output()[-3000:]
    assert "ScaleOperator stopped (factor 3.0)" in started["operator"].output()
    source = final_ledger(started["source"])
    assert source["outputs"][0]["sent"] == frames + 2


def test_redis_links_made_from_a_client_carry_a_run(redis_server):
    """arroyopy's RedisPublisher(client, name) and RedisListener(client, name, operator)."""
    import redis.asyncio

    from arroyo_core import RedisListener, RedisPublisher
    from tests.support.redis_server import PASSWORD  # with ':', '@' and '/' to quote

    client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, db=1,
                                 password=PASSWORD)
    publisher, listener = RedisPublisher(client, "frames"), RedisListener(client, "frames", None)
    publisher.open()
    listener.open()
    got: list = []
    thread = threading.Thread(target=listener.start, args=(got.append,), daemon=True)
    thread.start()
    try:
        publisher.publish(Start(data={"run": "r"}))
        for frame in range(3):
            publisher.publish(Event(metadata={"run": "r", "frame": frame},
                                    payload={"a": np.full(4, frame, "<i4")}))
        publisher.publish(Stop(data={"run": "r", "frames_sent": 3}))
        wait_for(lambda: len(got) == 5, 20, "the run read back from the stream")
    finally:
        listener.stop()
        thread.join(5)
        listener.close()
        publisher.close()
    assert [m.kind for m in got] == ["start", "event", "event", "event", "stop"]
    assert [int(m.payload["a"][0]) for m in got[1:4]] == [0, 1, 2]
    assert PASSWORD not in str(listener.status())
