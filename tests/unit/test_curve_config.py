"""CURVE link configuration: every misconfiguration is a ConfigError before a socket exists."""

from __future__ import annotations

import stat

import pytest
import zmq.auth

from arroyo_core.errors import ConfigError
from arroyo_core.transports.zmq.curve import CurveLink, generate_key_pair, load_allow_list


@pytest.fixture
def keys(tmp_path):
    for name in ("server", "alice", "bob"):
        generate_key_pair(name, tmp_path)
    return tmp_path


def server(keys, **options):
    return CurveLink.from_options("link", "tcp://*:5555", True, **options)


def client(keys, **options):
    return CurveLink.from_options("link", "tcp://host:5555", False, **options)


def test_no_curve_options_means_no_security(keys):
    assert server(keys) is None and client(keys) is None


def test_binding_side_is_the_server_with_its_allow_list(keys):
    link = server(keys, secret_key_file=str(keys / "server.key_secret"),
                  allow=[str(keys / "alice.key"), str(keys / "bob.key")])
    assert link.server
    assert link.allowed == {zmq.auth.load_certificate(keys / f"{n}.key")[0]
                            for n in ("alice", "bob")}
    _, secret = zmq.auth.load_certificate(keys / "server.key_secret")
    assert secret.decode() not in repr(link)


def test_connecting_side_is_a_client_of_the_server_key(keys):
    link = client(keys, secret_key_file=str(keys / "alice.key_secret"),
                  server_key_file=str(keys / "server.key"))
    assert not link.server
    assert link.server_key == zmq.auth.load_certificate(keys / "server.key")[0]


@pytest.mark.parametrize("side,options,message", [
    ("server", {"allow": "KEYS"}, "needs curve_secret_key_file"),
    ("server", {"secret_key_file": "server.key_secret"}, "needs curve_allow"),
    ("server", {"secret_key_file": "server.key_secret", "allow": "KEYS",
                "server_key_file": "server.key"}, "not curve_server_key_file"),
    ("client", {"secret_key_file": "alice.key_secret"}, "needs curve_server_key_file"),
    ("client", {"secret_key_file": "alice.key_secret", "server_key_file": "server.key",
                "allow": "KEYS"}, "curve_allow belongs on the side that binds"),
    ("client", {"secret_key_file": "alice.key", "server_key_file": "server.key"},
     "holds no secret key"),
    ("client", {"secret_key_file": "alice.key_secret", "server_key_file": "server.key_secret"},
     "is a secret key file"),
    ("server", {"secret_key_file": "server.key_secret", "allow": "alice.key_secret"},
     "is a secret key file"),
    ("server", {"secret_key_file": "missing.key_secret", "allow": "KEYS"},
     "No such file"),
])
def test_misconfigurations_are_config_errors(keys, side, options, message):
    options = {key: str(keys if value == "KEYS" else keys / value)
               for key, value in options.items()}
    with pytest.raises(ConfigError, match=message):
        (server if side == "server" else client)(keys, **options)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_secret_key_others_can_access_is_refused(keys, mode):
    secret = keys / "server.key_secret"
    secret.chmod(mode)
    with pytest.raises(ConfigError, match=rf"mode {mode:04o}\).*chmod 600"):
        server(keys, secret_key_file=str(secret), allow=str(keys))


def test_an_empty_allow_list_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="would let no client in"):
        load_allow_list(str(tmp_path / "empty"), "link")


def test_generate_writes_owner_only_secret_and_never_overwrites(tmp_path):
    public, secret = generate_key_pair("det", tmp_path / "sub")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    before = secret.read_bytes()
    with pytest.raises(ConfigError, match="not overwriting"):
        generate_key_pair("det", tmp_path / "sub")
    assert secret.read_bytes() == before
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ConfigError, match="plain file name"):
            generate_key_pair(bad, tmp_path)
