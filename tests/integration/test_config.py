"""Services configured by TOML and YAML files (the same keys as the command line), checked
with ``--check``, and refusing to start, with exit code 2 and a clear message, when the
configuration cannot work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
import zmq

from arroyo_core.message import Event, Start, Stop
from arroyo_core.wire import decode, encode
from tests.support.ledgers import status

pytestmark = pytest.mark.integration


def to_toml(config: dict) -> str:
    """Enough TOML for a service config: scalars, lists of scalars, one level of tables."""
    def value(item):
        return json.dumps(item)  # strings, numbers, booleans and lists read the same in TOML

    lines = [f"{key} = {value(item)}" for key, item in config.items() if not isinstance(item, dict)]
    for key, table in config.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_config(tmp_path, fmt: str, config: dict):
    path = tmp_path / f"service.{fmt}"
    path.write_text(to_toml(config) if fmt == "toml" else yaml.safe_dump(config))
    return path


def arroyo(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run ``arroyo ARGS`` to completion (for commands that are expected to end)."""
    return subprocess.run([sys.executable, "-m", "services", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("fmt,pattern", [("toml", "push"), ("yaml", "pub")])
def test_operator_service_runs_from_a_config_file(service, ipc, sender, receiver, tmp_path,
                                                  fmt, pattern):
    hop1, hop2, stats = ipc(), ipc(), ipc()
    in_pattern = {"push": "pull", "pub": "sub"}[pattern]
    config = write_config(tmp_path, fmt, {
        "name": f"binner-{fmt}", "operator": "downsample",
        "in": ">" + hop1, "in_pattern": in_pattern,
        "out": ["@" + hop2], "out_pattern": pattern, "status": stats,
        "queue_size": 7, "queue_policy": "block", "drain_timeout": 3.0,
        "options": {"factor": 2, "method": "sum"}})
    source = sender("@" + hop1, pattern)
    service("operator", "-c", str(config))  # its --name wins over the file's (see --check)
    out = receiver(">" + hop2, in_pattern)

    image = np.arange(24, dtype="<i4").reshape(4, 6)
    source.publish(Start({"run": fmt}))
    source.publish(Event({"frame": 0}, {"image": image}))
    source.publish(Stop({"run": fmt}))
    start, event, stop = out.take(3)
    assert start.meta == {"run": fmt} and stop.meta == {"run": fmt}
    expected = image.reshape(2, 2, 3, 2).sum(axis=(1, 3))
    assert np.array_equal(event.payload["image"], expected)

    ledger = status(stats)
    assert ledger["operator"]["type"] == "Downsample"
    assert ledger["queue"]["policy"] == "block"
    assert ledger["outputs"][0]["link"].startswith(f"output {pattern} @")


def test_command_line_options_win_over_the_config_file(service, ipc, sender, receiver,
                                                       tmp_path):
    hop1, hop2 = ipc(), ipc()
    config = write_config(tmp_path, "toml", {
        "operator": "downsample", "in": ">" + hop1, "out": "@" + hop2,
        "options": {"factor": 2, "method": "sum"}})
    source = sender("@" + hop1)
    service("operator", "-c", str(config), "-o", "factor=3", name="override")
    out = receiver(">" + hop2)
    source.publish(Start({}))
    source.publish(Event({}, {"image": np.ones((6, 6), "<u4")}))
    source.publish(Stop({}))
    _, event, _ = out.take(3)
    assert np.array_equal(event.payload["image"], np.full((2, 2), 9))  # 3x3 sums, not 2x2


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_check_accepts_a_good_config_without_opening_sockets(tmp_path, ipc, fmt):
    hop = ipc()
    config = write_config(tmp_path, fmt, {
        "name": "checked", "operator": "reduce", "in": ">" + hop, "out": "@" + hop,
        "options": {"roi": [0, 2, 0, 2], "stats": ["sum", "max"]}})
    result = arroyo("operator", "-c", str(config), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config ok: checked (operator)" in result.stdout
    # Nothing was bound: the same address is still free to bind here.
    socket = zmq.Context.instance().socket(zmq.PULL)
    try:
        socket.bind(hop)
    finally:
        socket.close(linger=0)


@pytest.mark.parametrize("config,message", [
    ({"operator": "reduce", "colour": "red"}, "unknown keys ['colour']"),
    ({"operator": "no-such-operator"}, "no operator named 'no-such-operator'"),
    ({"operator": "reduce", "options": {"stats": ["median"]}},
     "option stats: unknown ['median']"),
    ({"operator": "downsample", "options": {"factor": 0}}, "option factor: expected 1 or more"),
    ({"operator": "reduce", "in_pattern": "dealer"}, "input pattern 'dealer'"),
    ({"operator": "reduce", "out": "@udpish://x"}, "no transport for scheme 'udpish'"),
    ({"operator": "reduce", "in": ">tcp://127.0.0.1"}, "is not a valid address"),
], ids=["unknown-key", "unknown-operator", "bad-option", "bad-value", "bad-pattern",
        "bad-transport", "no-port"])
def test_check_rejects_a_bad_config_naming_what_is_wrong(tmp_path, ipc, config, message):
    full = {"in": ">" + ipc(), "out": "@" + ipc(), **config}
    path = write_config(tmp_path, "yaml", full)
    result = arroyo("operator", "-c", str(path), "--check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "config ok" not in result.stdout


def test_check_rejects_a_file_that_does_not_parse(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('operator = "reduce"\nin = [unclosed\n')
    result = arroyo("operator", "-c", str(path), "--check")
    assert result.returncode == 2
    assert "broken.toml" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--operator", "no-such-operator"], "no operator named 'no-such-operator'"),
    (["--out", "@tcp://127.0.0.1:notaport"], "is not a valid address"),
    (["--in", ">nonsense"], "is not a valid address"),
    (["--out", "@tcp://192.0.2.1:5000"], "cannot bind tcp://192.0.2.1:5000"),  # not our host
], ids=["unknown-operator", "bad-port", "bad-in", "foreign-host"])
def test_service_that_cannot_start_exits_2_with_a_clear_message(service, ipc, args, message):
    defaults = {"--in": ">" + ipc(), "--out": "@" + ipc()}
    for key in args[::2]:
        defaults.pop(key, None)
    flat = [item for pair in defaults.items() for item in pair]
    process = service("operator", *flat, *args, name="doomed", ready=False)
    assert process.process.wait(15) == 2
    assert message in process.output()
    assert "READY" not in process.output()


def test_service_whose_port_is_in_use_exits_2(service, ipc, zmq_socket):
    busy = f"tcp://127.0.0.1:{zmq_socket(zmq.PULL).bind_to_random_port('tcp://127.0.0.1')}"
    process = service("operator", "--in", ">" + ipc(), "--out", "@" + busy, name="clash",
                      ready=False)
    assert process.process.wait(15) == 2
    output = process.output()
    assert f"cannot bind {busy}" in output and "Address already in use" in output
    assert "READY" not in output


def test_a_service_says_which_ports_it_was_given(service, zmq_socket):
    """Bound to port '*', a service's READY line, log and status record give the port the
    system picked: what a client connects to, and what `arroyo status` reads."""
    process = service("operator", "--in", "@tcp://127.0.0.1:*", "--out", "@tcp://127.0.0.1:*",
                      "--status", "tcp://127.0.0.1:*", name="anyport")
    bound = {key: process.bound(key) for key in ("in", "out", "status")}
    assert process.ready_line == (f"READY anyport in={bound['in']} out={bound['out']} "
                                  f"status={bound['status']}")
    assert all(address.startswith("tcp://127.0.0.1:") and not address.endswith(":*")
               for address in bound.values()), bound
    assert len(set(bound.values())) == 3
    ledger = status(bound["status"])
    assert ledger["input"]["address"] == "@tcp://127.0.0.1:*"
    assert ledger["input"]["bound"] == bound["in"]
    assert ledger["outputs"][0]["bound"] == bound["out"]
    for key in ("in", "out", "status"):
        assert f"bound to {bound[key]}" in process.output()
    table = arroyo("status", bound["status"])
    assert table.returncode == 0 and "anyport" in table.stdout, table.stdout + table.stderr

    upstream, downstream = zmq_socket(zmq.PUSH), zmq_socket(zmq.PULL)
    upstream.connect(bound["in"])  # what connects to the ports it was given gets through
    downstream.connect(bound["out"])
    for seq, message in enumerate([Start({"run": "r"}), Stop({"run": "r"})]):
        upstream.send_multipart(encode(message, src="upstream", seq=seq))
        assert downstream.poll(10_000), "nothing came through"
        assert decode(downstream.recv_multipart())[0].meta == {"run": "r"}
