"""Secure by default, as rules on a chain file's addresses (services.chain_security): what
each service binds, connects to and which CURVE keys it gets. No sockets."""

from __future__ import annotations

import stat

import pytest

from arroyo_core.errors import ConfigError
from services.chain import load_chain
from services.chain_security import ensure_keys, keyed_services, secure_service

CHAIN = """
name = "c"
{top}
[services.source]
role = "listener"
source = "simulated"
{source_host}
out = "@tcp://*:5555"
status = "tcp://*:6000"
{source_extra}
[services.operator]
role = "operator"
in = ">tcp://{{source}}:5555"
out = "@tcp://*:5556"
status = "tcp://0.0.0.0:6001"
[services.sink]
role = "publisher"
sink = "stats"
in = ">tcp://{{operator}}:5556"
status = "ipc://sink.status"
"""


def chain(tmp_path, top="", source_host="", source_extra=""):
    path = tmp_path / "chain.toml"
    path.write_text(CHAIN.format(top=top, source_host=source_host, source_extra=source_extra))
    return load_chain(path)


def secured(loaded, name, target="hosts"):
    return secure_service(loaded, name, loaded.resolve(name, target), target)


def test_one_host_binds_connects_and_answers_on_loopback_only(tmp_path):
    loaded = chain(tmp_path)
    source, operator, sink = (secured(loaded, n)[0] for n in ("source", "operator", "sink"))
    assert source.out == ("@tcp://127.0.0.1:5555",) and source.status == "tcp://127.0.0.1:6000"
    assert operator.in_ == ">tcp://127.0.0.1:5555" and operator.out == ("@tcp://127.0.0.1:5556",)
    assert operator.status == "tcp://127.0.0.1:6001"
    assert sink.status == "ipc://sink.status"  # ipc is this host's already
    assert all(not c.in_options and not c.out_options for c in (source, operator, sink))
    assert keyed_services(loaded) == [] and ensure_keys(loaded) == []
    assert not (tmp_path / "keys").exists()


def test_a_link_across_hosts_gets_curve_and_the_rest_stays_on_loopback(tmp_path):
    loaded = chain(tmp_path, source_host='host = "10.0.0.1"')
    with pytest.raises(ConfigError, match="arroyo keys chain"):
        secured(loaded, "source")  # no keys yet: says how to make them
    made = ensure_keys(loaded)
    keys = tmp_path / "keys"
    assert sorted(p.name for p in made) == ["operator.key", "source.key"]
    assert stat.S_IMODE((keys / "source.key_secret").stat().st_mode) == 0o600
    before = (keys / "source.key_secret").read_bytes()
    assert ensure_keys(loaded) == []  # reused, never overwritten
    assert (keys / "source.key_secret").read_bytes() == before

    source, _, _ = secured(loaded, "source")
    assert source.out == ("@tcp://*:5555",)  # reachable from the other host, but CURVE
    assert source.out_options == {"curve_secret_key_file": str(keys / "source.key_secret"),
                                  "curve_allow": [str(keys / "operator.key")]}
    operator, info, _ = secured(loaded, "operator")
    assert operator.in_ == ">tcp://10.0.0.1:5555"
    assert operator.in_options == {"curve_secret_key_file": str(keys / "operator.key_secret"),
                                   "curve_server_key_file": str(keys / "source.key")}
    assert operator.out == ("@tcp://127.0.0.1:5556",) and not operator.out_options
    assert any("CURVE client" in line for line in info)


def test_a_half_pair_is_an_error_not_a_new_pair(tmp_path):
    loaded = chain(tmp_path, source_host='host = "10.0.0.1"')
    ensure_keys(loaded)
    (tmp_path / "keys/operator.key_secret").unlink()
    with pytest.raises(ConfigError, match="no other half"):
        ensure_keys(loaded)


def test_insecure_keeps_the_addresses_and_warns(tmp_path):
    loaded = chain(tmp_path, top="insecure = true", source_host='host = "10.0.0.1"')
    config, info, warnings = secured(loaded, "source")
    assert config == loaded.resolve("source")
    assert warnings and "insecure" in warnings[0] and ensure_keys(loaded) == []


def test_insecure_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match="'insecure' is true or false"):
        chain(tmp_path, top='insecure = "yes"')


def test_under_compose_the_network_is_the_host(tmp_path):
    loaded = chain(tmp_path, source_host='host = "10.0.0.1"')
    config, _, _ = secured(loaded, "operator", "compose")
    assert config == loaded.resolve("operator", "compose")


def test_user_curve_options_are_left_as_written(tmp_path):
    extra = ('out_options = { curve_secret_key_file = "k/s.key_secret", '
             'curve_allow = "k/clients" }')
    loaded = chain(tmp_path, source_host='host = "10.0.0.1"', source_extra=extra)
    source, _, _ = secured(loaded, "source")
    operator, _, _ = secured(loaded, "operator")
    assert source.out == ("@tcp://*:5555",) and source.out_options["curve_allow"] == "k/clients"
    assert operator.in_ == ">tcp://10.0.0.1:5555" and operator.in_options == {}
    assert keyed_services(loaded) == []


def test_a_bind_for_outside_peers_is_kept_and_warned_about(tmp_path):
    loaded = chain(tmp_path, source_extra='')
    text = (tmp_path / "chain.toml").read_text().replace(
        'out = "@tcp://*:5556"', 'out = ["@tcp://*:5556", "@tcp://*:5557"]')
    (tmp_path / "chain.toml").write_text(text)
    loaded = load_chain(tmp_path / "chain.toml")
    operator, _, warnings = secured(loaded, "operator")
    assert operator.out == ("@tcp://127.0.0.1:5556", "@tcp://*:5557")
    assert any("binds tcp://*:5557" in line and "outside the chain" in line
               for line in warnings)
