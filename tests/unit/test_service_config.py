"""ServiceConfig: one typed description of a service's settings. The errors it gives (one
line, naming the section, the key and what was expected), the deprecated 'stats' key, and
the command line derived from it, with `-o KEY=VALUE` read without tracebacks."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from arroyo_core.config import ROLES, ServiceConfig, settings
from arroyo_core.errors import ConfigError
from services.chain import parse_chain
from services.cli import main
from services.service_options import given_settings, merge, read_value

ADDRESSES = "@tcp://*:5555 (bind), >tcp://host:5555 (connect), ipc:///path or redis://"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("role,data,message", [
    ("operator", {"queue_size": "big"}, "[operator] queue_size: expected an integer, got 'big'"),
    ("publisher", {"name": "sink", "drain_timeout": "soon"},
     "[sink] drain_timeout: expected a number, got 'soon'"),
    ("listener", {"out": 5555},
     f"[listener] out: expected an address or a list of addresses such as {ADDRESSES}"),
    ("operator", {"in": [">tcp://a:1"]}, f"[operator] in: expected an address such as {ADDRESSES}"),
    ("operator", {"queue_policy": "drop"}, "[operator] queue_policy: expected one of block, "
                                           "drop-newest, drop-oldest, keep-latest, got 'drop'"),
    ("operator", {"memory_limit": "lots"},
     "[operator] memory_limit: expected a size such as 4096 or '512MiB', got 'lots'"),
    ("operator", {"options": [1, 2]},
     "[operator] options: expected a table of keyword arguments, got [1, 2]"),
    ("operator", {"queue_size": True}, "[operator] queue_size: expected an integer, got True"),
    ("operator", {"queue_sise": 8},
     "[operator] unknown keys ['queue_sise']; did you mean 'queue_size'?"),
    ("publisher", {"snk": "stats", "drain_timout": 1},
     "[publisher] unknown keys ['drain_timout', 'snk']; did you mean 'drain_timeout' for "
     "'drain_timout', 'sink' for 'snk'?"),
    ("operator", {"colour": "red"},
     "[operator] unknown keys ['colour']; known: drain_timeout, in,"),
    ("listener", {"in": ">tcp://a:1"}, "[listener] a listener has no 'in'"),
    ("publisher", {"operator": "reduce"}, "[publisher] a publisher has no 'operator'"),
    ("operator", {"status": "tcp://*:1", "stats": "tcp://*:2"},
     "[operator] 'stats' is the old name of 'status': give only 'status'"),
], ids=["int", "float", "addresses", "address", "choice", "size", "options", "bool-is-no-int",
        "misspelt", "two-misspelt", "unknown", "not-for-role", "other-plugin", "both-names"])
def test_errors_name_the_section_the_key_and_what_was_expected(role, data, message):
    with pytest.raises(ConfigError) as info:
        ServiceConfig.from_mapping(role, data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_chain_file_error_names_the_file_and_the_service_table():
    service = {"role": "operator", "in": ">tcp://a:1", "out": "@tcp://*:2"}
    with pytest.raises(ConfigError) as info:
        parse_chain({"services": {"op": {**service, "queue_size": "big"}}}, origin="c.toml")
    assert str(info.value) == "c.toml: [services.op] queue_size: expected an integer, got 'big'"
    with pytest.raises(ConfigError, match=r"\[services.op\] unknown keys \['hots'\]; did you "
                                          r"mean 'host'\?"):
        parse_chain({"services": {"op": {**service, "hots": "10.0.0.1"}}}, origin="c.toml")


def test_values_are_normalised_and_read_by_attribute_or_key():
    config = ServiceConfig.from_mapping("operator", {
        "in": ">tcp://a:1", "out": "@tcp://*:2", "queue_bytes": "1MiB", "drain_timeout": 3,
        "memory_limit": 4096, "options": {"factor": 2}, "in_pattern": None})
    assert config.out == ("@tcp://*:2",) and config["out"] == config.out
    assert config["in"] == config.in_ == ">tcp://a:1"
    assert (config.queue_bytes, config.memory_limit, config.drain_timeout) == (2**20, 4096, 3.0)
    assert config.in_pattern is None and config.operator == "passthrough"  # None: not given
    assert config.section == "operator"
    with pytest.raises(ConfigError, match=r"\[operator\] queue_size: expected an integer"):
        ServiceConfig(role="operator", queue_size="big")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        config["colour"]


def test_stats_is_read_as_status_with_a_warning_naming_the_new_key(caplog):
    with caplog.at_level(logging.WARNING):
        config = ServiceConfig.from_mapping("publisher", {"stats": "tcp://*:6000"})
    assert config.status == "tcp://*:6000"
    assert "[publisher] 'stats' is deprecated: call it 'status' (--status" in caplog.text


def test_stats_option_still_works_and_says_to_use_status():
    result = invoke("publisher", "--in", ">tcp://127.0.0.1:5999", "--stats", "tcp://*:6999",
                    "--check")
    assert result.exit_code == 0, result.output
    assert "'stats' is deprecated: call it 'status' (--status on the command line)" in \
        result.output
    assert "config ok: publisher" in result.output
    assert "--stats" not in invoke("publisher", "--help").output  # hidden: --status is shown


def test_every_setting_a_role_has_is_one_of_its_options_with_the_settings_help():
    for role in ROLES:
        shown = "".join(invoke(role, "--help").output.split())  # wrapping aside
        for key, setting, _ in settings():
            flag = (setting.flags or (f"--{key.replace('_', '-')}",))[-1]
            assert (f"{flag} " in invoke(role, "--help").output) == (role in setting.roles), \
                (role, flag)
            if role in setting.roles:
                assert "".join(setting.help.split()) in shown, (role, key)


@pytest.mark.parametrize("text,value", [
    ("@tcp://*:5555", "@tcp://*:5555"), (">tcp://host:5555", ">tcp://host:5555"),
    ("10", 10), ("0.5", 0.5), ("[512,512]", [512, 512]), ("'010'", "010"), ("true", True),
    ("{a: 1}", {"a": 1}), ("a: b", "a: b"), ("2024-01-01", "2024-01-01"), ("*.h5", "*.h5"),
    ("!!python/none x", "!!python/none x"), ("runs 1", "runs 1"), ("", None),
])
def test_option_values_are_yaml_when_that_reads_as_a_value_else_text(text, value):
    assert read_value(text) == value


def test_an_address_given_with_o_reaches_the_plugin():
    result = invoke("publisher", "--in", ">tcp://127.0.0.1:5999", "--sink", "zmq",
                    "-o", "address=@tcp://127.0.0.1:5998", "--check")
    assert result.exit_code == 0, result.output
    given = given_settings("operator", {"in_options": ("curve_server_key_file=@k",),
                                        "out_options": ("peers=2", "x=>y")})
    assert given == {"in_options": {"curve_server_key_file": "@k"},
                     "out_options": {"peers": 2, "x": ">y"}}


@pytest.mark.parametrize("flag", ["-o", "--in-option", "--out-option"])
def test_a_pair_without_a_value_is_a_one_line_usage_error_naming_the_option(flag):
    result = invoke("operator", "--in", ">tcp://127.0.0.1:5999", "--out", "@tcp://*:5998",
                    flag, "endpoint", "--check")
    assert result.exit_code == 2
    assert f"{flag}" in result.output and "'endpoint' is not KEY=VALUE" in result.output
    assert "Traceback" not in result.output


def test_a_bad_config_file_value_exits_2_with_one_line(tmp_path):
    path = tmp_path / "op.toml"
    path.write_text('in = ">tcp://127.0.0.1:5999"\nqueue_size = "big"\nqeue_policy = "block"\n')
    result = invoke("operator", "-c", str(path), "--check")
    assert result.exit_code == 2
    assert result.stderr == ("error: [operator] unknown keys ['qeue_policy']; did you mean "
                             "'queue_policy'?\n")
    path.write_text('in = ">tcp://127.0.0.1:5999"\nqueue_size = "big"\n')
    result = invoke("operator", "-c", str(path), "--check")
    assert result.stderr == "error: [operator] queue_size: expected an integer, got 'big'\n"


def test_the_command_line_wins_over_the_file_and_merges_tables():
    data = {"options": {"factor": 2, "method": "sum"}, "stats": "tcp://*:1", "out": "@tcp://*:2"}
    given = {"options": {"factor": 3}, "status": "tcp://*:3", "out": ["@tcp://*:4"]}
    assert merge(data, given) == {"options": {"factor": 3, "method": "sum"},
                                  "status": "tcp://*:3", "out": ["@tcp://*:4"]}
