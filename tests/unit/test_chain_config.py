"""Chain files: parsing, link checks, and the configurations generated from them."""

from pathlib import Path

import pytest
import yaml

from arroyo_core.chain import load_chain, parse_chain
from arroyo_core.errors import ConfigError
from services.cli import main
from services.deploy import compose_file, service_argv, supervisor_conf

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHAIN = ROOT / "deploy" / "chain.toml"


def chain_of(**services):
    return parse_chain({"name": "t", "services": services})


SOURCE = {"role": "listener", "source": "simulated", "out": "@tcp://*:5555"}
OPERATOR = {"role": "operator", "in": ">tcp://{source}:5555", "out": "@tcp://*:5556"}
SINK = {"role": "publisher", "in": ">tcp://{operator}:5556"}


def test_default_chain_is_valid_and_ordered():
    chain = load_chain(DEFAULT_CHAIN)
    assert list(chain.services) == ["source", "operator", "sink"]
    assert chain.problems() == []
    assert chain.order() == ["source", "operator", "sink"]
    assert chain.depth() == {"source": 2, "operator": 1, "sink": 0}


def test_placeholders_are_hosts_or_compose_names():
    chain = chain_of(source={**SOURCE, "host": "10.0.0.1"}, operator=OPERATOR, sink=SINK)
    assert chain.resolve("operator")["in"] == ">tcp://10.0.0.1:5555"
    assert chain.resolve("sink")["in"] == ">tcp://127.0.0.1:5556"
    assert chain.resolve("operator", "compose")["in"] == ">tcp://source:5555"
    assert chain.problems() == []


def test_yaml_and_toml_say_the_same(tmp_path):
    data = {"name": "t", "services": {"source": SOURCE, "operator": OPERATOR, "sink": SINK}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    assert load_chain(tmp_path / "c.yaml").services == parse_chain(data).services


@pytest.mark.parametrize("services,message", [
    ({"source": {**SOURCE, "role": "detector"}}, "'role' must be one of"),
    ({"source": {**SOURCE, "colour": 1}}, "unknown keys ['colour']"),
    ({"Source": SOURCE}, "service names must match"),
    ({"source": {**SOURCE, "in": ">tcp://x:1"}}, "a listener has no 'in'"),
    ({"operator": {"role": "operator", "in": ">tcp://a:1"}}, "needs 'out'"),
    ({"operator": {**OPERATOR}}, "names {source}, which is not a service"),
    ({"source": {**SOURCE, "program": {"startsec": 1}}}, "supervisor program keys"),
])
def test_bad_chains_name_what_is_wrong(services, message):
    with pytest.raises(ConfigError, match="services|chain|role|keys|names|needs|listener") as exc:
        parse_chain({"name": "t", "services": services})
    assert message in str(exc.value)


def test_link_problems_are_found():
    unbound = chain_of(source=SOURCE, operator={**OPERATOR, "in": ">tcp://{source}:5999"},
                       sink=SINK)
    assert any("[operator] in >tcp://127.0.0.1:5999: no service" in p for p in unbound.problems())
    patterns = chain_of(source={**SOURCE, "out_pattern": "pub"}, operator=OPERATOR, sink=SINK)
    assert any("pull needs push" in p for p in patterns.problems())
    clash = chain_of(source={**SOURCE, "stats": "tcp://*:5556"}, operator=OPERATOR, sink=SINK)
    assert any("bind the same address" in p for p in clash.problems())
    wrong_name = chain_of(source=SOURCE, operator=OPERATOR,
                          sink={**SINK, "in": ">tcp://{source}:5556", "host": "127.0.0.1"})
    assert any("names 'source'" in p for p in wrong_name.problems())
    external = parse_chain({"services": {"operator": {**OPERATOR, "in": ">tcp://det:9"}},
                            "external": ["tcp://det:9"]})
    assert external.problems() == []


def test_connecting_outputs_and_binding_inputs_link_up():
    chain = chain_of(source=SOURCE,
                     operator={**OPERATOR, "out": ">tcp://{sink}:5556"},
                     sink={"role": "publisher", "in": "@tcp://*:5556", "host": "10.0.0.3"})
    assert chain.problems() == []
    assert chain.order() == ["source", "operator", "sink"]


def test_service_argv_round_trips_through_the_cli():
    chain = chain_of(source={**SOURCE, "options": {"shape": [4, 4], "dtype": "uint8",
                                                    "rate": 0.5}},
                     operator={**OPERATOR, "in_options": {"hwm": 7}, "drain_timeout": 3,
                               "out_options": {"overflow": "drop-newest"}, "queue_bytes": 1000},
                     sink={**SINK, "sink": "hdf5", "options": {"directory": "runs 1",
                                                               "compression": "010"}})
    argv = service_argv(chain, "source")
    assert argv[:3] == ["listener", "--name", "source"]
    assert "shape=[4,4]" in argv and "rate=0.5" in argv and "dtype=uint8" in argv
    # a string YAML would read as something else ("010" is 8) is quoted
    assert '-o directory=runs 1 -o compression="010"' in " ".join(service_argv(chain, "sink"))
    op = service_argv(chain, "operator")
    for pair in (["--in-option", "hwm=7"], ["--out-option", "overflow=drop-newest"],
                 ["--drain-timeout", "3"], ["--queue-bytes", "1000"]):
        assert pair[1] == op[op.index(pair[0]) + 1]
    for name in chain.services:  # the real CLI accepts every generated command line
        result = _invoke([*service_argv(chain, name), "--check"])
        assert result.exit_code == 0, result.output


def _invoke(args):
    from click.testing import CliRunner

    return CliRunner().invoke(main, args)


def test_committed_deploy_files_are_generated_from_the_default_chain():
    """deploy/supervisor/conf.d/arroyo.conf and docker-compose.yml come from deploy/chain.toml."""
    chain = load_chain(DEFAULT_CHAIN)
    source = "deploy/chain.toml"
    assert (ROOT / "deploy/supervisor/conf.d/arroyo.conf").read_text() == \
        supervisor_conf(chain, source=source), "regenerate: arroyo deploy supervisor ..."
    assert (ROOT / "docker-compose.yml").read_text() == compose_file(chain, source=source), \
        "regenerate: arroyo deploy compose deploy/chain.toml -o docker-compose.yml"


def test_supervisor_conf_sets_drain_aware_stop_and_chain_overrides():
    chain = chain_of(source={**SOURCE, "drain_timeout": 2.5, "program": {"startsecs": 5}},
                     operator=OPERATOR, sink=SINK)
    text = supervisor_conf(chain, arroyo="/opt/venv/bin/arroyo", log_dir="/var/log/arroyo")
    source = text.split("[program:source]")[1].split("[program:")[0]
    assert "stopwaitsecs=8\n" in source  # ceil(2.5) + 5
    assert "startsecs=5\n" in source and "; Set in the chain file." in source
    assert "command=/opt/venv/bin/arroyo listener --name source" in source
    assert "stdout_logfile=/var/log/arroyo/source.log" in source
    assert "[group:t]\nprograms=source,operator,sink\n" in text
    priorities = {name: int(text.split(f"[program:{name}]")[1].split("priority=")[1].split()[0])
                  for name in ("source", "operator", "sink")}
    assert priorities["sink"] < priorities["operator"] < priorities["source"]


def test_select_by_name_or_host_keeps_addresses():
    chain = chain_of(source={**SOURCE, "host": "10.0.0.1"}, operator=OPERATOR, sink=SINK)
    only = chain.select(host="10.0.0.1")
    assert list(only.services) == ["source"]
    part = chain.select(["operator"])
    assert part.resolve("operator")["in"] == ">tcp://10.0.0.1:5555"
    assert part.problems() == []
    with pytest.raises(ConfigError, match="no service"):
        chain.select(["nope"])
