"""CURVE links between real processes: only clients on the allow-list get data in.

The service under test is a publisher whose input binds (so it is the CURVE server, with
an allow-list); the listed client is a real listener service that connects. Every other
client is a raw pyzmq socket that sends valid Arroyo messages under its own sender id,
so the ledger shows whose messages got in.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from arroyo_core.link import ZmqListener, ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.transports.zmq.connections import RECONNECT_AFTER_S
from arroyo_core.transports.zmq.curve import load_secret_key
from arroyo_core.wire import encode
from services.status_server import query_status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def arroyo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """server, client (allowed: its public key is in allowed/) and intruder key pairs."""
    root = tmp_path_factory.mktemp("keys")
    for name in ("server", "client", "intruder"):
        assert arroyo("keys", "generate", name, "--dir", str(root)).returncode == 0
    (root / "allowed").mkdir()
    (root / "allowed" / "client.key").write_bytes((root / "client.key").read_bytes())
    return root


def write_config(path: Path, lines: list[str], section: str, options: dict[str, Path]) -> Path:
    """A TOML service config: ``lines``, then ``[section]`` with string ``options``."""
    lines = [*lines, f"[{section}]", *(f'{key} = "{value}"' for key, value in options.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def sink_config(path: Path, endpoint: str, stats: str, in_options: dict[str, Path]) -> Path:
    return write_config(path, ['sink = "stats"', f'in = "@{endpoint}"', f'status = "{stats}"'],
                        "in_options", in_options)


def refusals(stats: str) -> dict[str, int]:
    return query_status(stats)["input"]["connections"]["refused"]


def run_frames(src: str) -> list[list]:
    """One small run, wire-encoded under sender id ``src``."""
    messages = [Start({"run": src}),
                *(Event({"run": src, "frame": i}, {"image": np.full(16, i, "u2")})
                  for i in range(5)),
                Stop({"run": src, "frames_sent": 5})]
    return [encode(m, src=src, seq=seq) for seq, m in enumerate(messages)]


def intruder(zmq_socket, endpoint: str, kind: str, keys: Path) -> bytes | None:
    """Connect a client of ``kind``, queue one run on it; return its public key."""
    socket = zmq_socket(zmq.PUSH)
    public = None
    server_public, _ = zmq.auth.load_certificate(keys / "server.key")
    if kind == "random-key":
        public, secret = zmq.curve_keypair()
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_serverkey = server_public
    elif kind == "wrong-server-key":
        public, secret = zmq.auth.load_certificate(keys / "client.key_secret")
        socket.curve_publickey, socket.curve_secretkey = public, secret  # a listed client
        socket.curve_serverkey = zmq.curve_keypair()[0]
    elif kind == "not-listed":
        public, secret = zmq.auth.load_certificate(keys / "intruder.key_secret")
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_serverkey = server_public
    socket.connect(endpoint)
    for frames in run_frames(kind):
        socket.send_multipart(frames, flags=zmq.NOBLOCK)  # queued until a handshake succeeds
    return public


def test_only_the_listed_client_gets_in(service, ipc, tmp_path, keys, zmq_socket):
    # tcp, because the refusals name the client's host
    stats = ipc()
    config = sink_config(tmp_path / "sink.toml", "tcp://127.0.0.1:*", stats, {
        "curve_secret_key_file": keys / "server.key_secret", "curve_allow": keys / "allowed"})
    sink = service("publisher", "-c", str(config), name="sink")
    endpoint = sink.bound("in")

    # One intruder at a time, so that each refusal is known to be its own. A client
    # without CURVE is refused for a mechanism mismatch, or, when it notices the mismatch
    # first and hangs up, for a handshake its peer broke off: libzmq decides which.
    kinds = ["null", "random-key", "not-listed", "wrong-server-key"]
    for kind in kinds:
        before = sum(refusals(stats).values())
        public = intruder(zmq_socket, endpoint, kind, keys)
        logged = {
            "null": ["security mismatch", "the peer closed the connection"],
            "wrong-server-key": ["could not be decrypted (the peer has a wrong server key)"],
        }.get(kind) or [  # the ZAP handler names the peer and the key it refused
            f"refused CURVE client at 127.0.0.1 with public key {public.decode()}"]
        try:
            wait_for(lambda b=before: sum(refusals(stats).values()) > b, what=f"{kind} refused")
            wait_for(lambda t=logged: any(text in sink.output() for text in t),
                     what=f"{kind}'s refusal in the log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the service logged:\n{sink.output()[-3000:]}") from None

    client = write_config(tmp_path / "client.toml", [
        'source = "simulated"', f'out = ">{endpoint}"',
        "[options]", "shape = [32, 32]", "frames = 300", "rate = 0"], "out_options", {
        "curve_secret_key_file": keys / "client.key_secret",
        "curve_server_key_file": keys / "server.key"})
    service("listener", "-c", str(client), name="client")

    def complete_run():
        runs = query_status(stats)["outputs"][0]["runs"]
        return runs and runs[-1]["complete"] and runs[-1]
    run = wait_for(complete_run, what="the listed client's run")
    assert run["frames"] == run["frames_sent"] == 300 and run["lost"] == 0

    ledger = query_status(stats)
    runs = ledger["outputs"][0]["runs"]
    assert [r["run"] for r in runs] == [run["run"]], "an intruder's run reached the sink"
    link = ledger["input"]
    assert len(link["senders"]) == 1 and link["received"] == 302, link
    assert not set(link["senders"]) & set(kinds)
    refused = link["connections"]["refused"]
    assert refused.get("client key refused by the allow-list", 0) >= 2, refused
    assert any("decrypted" in reason for reason in refused), refused

    output = sink.output()
    for name in ("server", "client", "intruder"):
        _, secret = zmq.auth.load_certificate(keys / f"{name}.key_secret")
        assert secret.decode() not in output, f"{name}'s secret key was logged"


def test_a_refused_client_says_so_and_does_not_retry(keys, caplog):
    """libzmq does not retry a refused handshake; the listener must not either (it
    reconnects only a connection that was up), or it would hammer the server."""
    server = ZmqPublisher("@tcp://127.0.0.1:*",
                          curve_secret_key_file=str(keys / "server.key_secret"),
                          curve_allow=str(keys / "allowed"), linger_ms=0)
    server.open()
    endpoint = server.status().bound
    client = ZmqListener(">" + endpoint, curve_secret_key_file=str(keys / "intruder.key_secret"),
                         curve_server_key_file=str(keys / "server.key"))
    client.open()
    thread = threading.Thread(target=client.start, args=(lambda message: None,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: client.stats()["connections"]["refused"], what="a refusal")
        window = time.monotonic() + 3 * RECONNECT_AFTER_S
        while time.monotonic() < window:  # a negative: watch for a while that nothing retries
            assert client.stats()["connections"]["dropped"] == 0
            time.sleep(0.05)
        assert server.stats()["connections"]["refused"] == {
            "client key refused by the allow-list": 1}
        assert f"the server at {endpoint} refused our key" in caplog.text
    finally:
        client.stop()
        thread.join(5)
        client.close()
        server.close()


def test_service_refuses_a_secret_key_others_can_read(service, ipc, tmp_path, keys):
    secret = tmp_path / "server.key_secret"
    secret.write_bytes((keys / "server.key_secret").read_bytes())
    secret.chmod(0o644)
    config = sink_config(tmp_path / "sink.toml", ipc(), ipc(), {
        "curve_secret_key_file": secret, "curve_allow": keys / "allowed"})
    sink = service("publisher", "-c", str(config), name="sink", ready=False)
    assert sink.process.wait(15) == 2
    output = sink.output()
    assert f"secret key file {secret} is accessible to group or others (mode 0644)" in output
    assert f"chmod 600 {secret}" in output
    _, secret_key = zmq.auth.load_certificate(secret)
    assert secret_key.decode() not in output


def test_keys_generate_writes_an_owner_only_secret(tmp_path):
    directory = tmp_path / "new" / "keys"
    result = arroyo("keys", "generate", "beamline-7", "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    public, secret = directory / "beamline-7.key", directory / "beamline-7.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert sorted(os.listdir(directory)) == ["beamline-7.key", "beamline-7.key_secret"]
    public_key, secret_key = load_secret_key(secret, "test")
    assert zmq.auth.load_certificate(public) == (public_key, None)
    assert zmq.curve_public(secret_key) == public_key

    before = secret.read_bytes()
    again = arroyo("keys", "generate", "beamline-7", "--dir", str(directory))
    assert again.returncode == 2 and "not overwriting" in again.stderr
    assert secret.read_bytes() == before
