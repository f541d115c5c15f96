"""Chain files: parsing, link checks, and the configurations generated from them."""

from pathlib import Path

import pytest
import yaml

from arroyo_core.errors import ConfigError
from services.chain import load_chain, parse_chain, service_command
from services.cli import main
from services.deploy import compose_file, supervisor_conf

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
    ephemeral = chain_of(source={**SOURCE, "status": "tcp://127.0.0.1:*"},
                         operator={**OPERATOR, "status": "tcp://127.0.0.1:*"}, sink=SINK)
    assert ephemeral.problems() == []  # each bind of port '*' gets a port of its own
    wrong_name = chain_of(source=SOURCE, operator=OPERATOR,
                          sink={**SINK, "in": ">tcp://{source}:5556", "host": "127.0.0.1"})
    assert any("names 'source'" in p for p in wrong_name.problems())
    external = parse_chain({"services": {"operator": {**OPERATOR, "in": ">tcp://det:9"}},
                            "external": ["tcp://det:9"]})
    assert external.problems() == []


def test_a_connect_nobody_binds_says_how_to_mark_it_external():
    chain = chain_of(sink={"role": "publisher", "in": ">tcp://beamline:5560"})
    [problem] = chain.problems()
    assert 'external = ["tcp://beamline:5560"]' in problem
    for spelling in ("tcp://beamline:5560", ">tcp://beamline:5560"):  # as the error says, or
        marked = parse_chain({"services": {"sink": {"role": "publisher",  # as `in` has it
                                                    "in": ">tcp://beamline:5560"}},
                              "external": [spelling]})
        assert marked.problems() == []


def test_a_forwarding_sinks_address_is_a_bind_other_services_reach():
    """`--sink zmq -o address=@tcp://*:5560` binds as an `out` would: a consumer of it in
    the chain needs no `external`, and starts after it."""
    chain = chain_of(
        source=SOURCE,
        forwarder={"role": "publisher", "in": ">tcp://{source}:5555", "sink": "zmq",
                   "options": {"address": "@tcp://*:5560", "pattern": "pub"}},
        viewer={"role": "publisher", "in": ">tcp://{forwarder}:5560", "in_pattern": "sub"})
    assert chain.problems() == []
    assert chain.order() == ["source", "forwarder", "viewer"]
    push = chain_of(forwarder={"role": "publisher", "in": "@tcp://*:5555", "sink": "zmq",
                               "options": {"address": "@tcp://*:5560"}},
                    viewer={"role": "publisher", "in": ">tcp://{forwarder}:5560",
                            "in_pattern": "sub"})
    assert any("(sub) is bound by [forwarder] out @tcp://*:5560 (push)" in p
               for p in push.problems())


def test_connecting_outputs_and_binding_inputs_link_up():
    chain = chain_of(source=SOURCE,
                     operator={**OPERATOR, "out": ">tcp://{sink}:5556"},
                     sink={"role": "publisher", "in": "@tcp://*:5556", "host": "10.0.0.3"})
    assert chain.problems() == []
    assert chain.order() == ["source", "operator", "sink"]


def test_every_service_runs_from_the_chain_file_by_name(tmp_path):
    """What replaced rebuilding each service's command line from the chain: the command
    names the chain file and the service, and the service reads its settings from there,
    values as the file typed them ("010" stays a string, [4, 4] a list)."""
    data = {"name": "t", "services": {
        "source": {**SOURCE, "options": {"shape": [4, 4], "dtype": "uint8", "rate": 0.5}},
        "operator": {**OPERATOR, "in_options": {"hwm": 7}, "drain_timeout": 3,
                     "out_options": {"overflow": "drop-newest"}, "queue_bytes": 1000},
        "sink": {**SINK, "sink": "hdf5", "options": {"directory": "runs 1",
                                                     "compression": "010"}}}}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data))
    chain = load_chain(path)
    assert service_command(path, "source") == ["service", str(path), "source"]
    assert chain.resolve("source").options == {"shape": [4, 4], "dtype": "uint8", "rate": 0.5}
    assert chain.resolve("sink").options["compression"] == "010"
    op = chain.resolve("operator")
    assert (op.in_options, op.out_options) == ({"hwm": 7}, {"overflow": "drop-newest"})
    assert (op.drain_timeout, op.queue_bytes) == (3.0, 1000)
    for name in chain.services:  # the real CLI runs (here: checks) every service by name
        result = _invoke([*service_command(path, name), "--check"])
        assert result.exit_code == 0, result.output
        assert f"config ok: {name}" in result.output


def _invoke(args):
    from click.testing import CliRunner

    return CliRunner().invoke(main, args)


def test_committed_deploy_files_are_generated_from_the_default_chain():
    """deploy/supervisor/conf.d/arroyo.conf and docker-compose.yml come from deploy/chain.toml."""
    chain = load_chain(DEFAULT_CHAIN)
    source = "deploy/chain.toml"
    assert (ROOT / "deploy/supervisor/conf.d/arroyo.conf").read_text() == \
        supervisor_conf(chain, source=source, chain_path="%(here)s/../../chain.toml"), \
        "regenerate: arroyo deploy supervisor ..."
    assert (ROOT / "docker-compose.yml").read_text() == compose_file(chain, source=source), \
        "regenerate: arroyo deploy compose deploy/chain.toml -o docker-compose.yml"


def test_supervisor_conf_sets_drain_aware_stop_and_chain_overrides():
    chain = chain_of(source={**SOURCE, "drain_timeout": 2.5, "program": {"startsecs": 5}},
                     operator=OPERATOR, sink=SINK)
    text = supervisor_conf(chain, arroyo="/opt/venv/bin/arroyo", log_dir="/var/log/arroyo",
                           chain_path="/srv/t.toml")
    source = text.split("[program:source]")[1].split("[program:")[0]
    assert "stopwaitsecs=8\n" in source  # ceil(2.5) + 5
    assert "startsecs=5\n" in source and "; Set in the chain file." in source
    assert "command=/opt/venv/bin/arroyo service /srv/t.toml source --metrics :9400\n" in source
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


def test_redis_links_pair_a_writer_and_a_reader_of_one_stream_on_one_server():
    chain = chain_of(
        source={"role": "listener", "source": "simulated",
                "out": "redis://127.0.0.1:6379/0?stream=frames"},
        operator={"role": "operator", "in": "redis://localhost/0?stream=frames",
                  "out": "redis://:secret@127.0.0.1:6379/1", "out_options": {"channel": "live"}},
        sink={"role": "publisher", "in": "redis://localhost:6379/1?channel=live"})
    assert chain.problems() == []
    pairs = {(seeker.service, found.service) for seeker, found in chain.links()}
    assert pairs == {("operator", "source"), ("sink", "operator")}  # (reader, writer)
    assert chain.order() == ["source", "operator", "sink"]


@pytest.mark.parametrize("reader", [
    "redis://127.0.0.1:6379/0?stream=other",      # another stream
    "redis://127.0.0.1:6379/2?stream=frames",     # another database
    "redis://127.0.0.1:6380/0?stream=frames",     # another server
    "redis://127.0.0.1:6379/0?channel=frames",    # a channel, not the stream
])
def test_a_redis_reader_that_no_service_writes_is_a_problem(reader):
    chain = chain_of(source={"role": "listener", "source": "simulated",
                             "out": "redis://127.0.0.1:6379/0?stream=frames"},
                     sink={"role": "publisher", "in": reader})
    [problem] = chain.problems()
    assert problem.startswith(f"[sink] in >{reader}: no service in the chain writes")
    external = parse_chain({"services": {"sink": {"role": "publisher", "in": reader}},
                            "external": [reader]})
    assert external.problems() == []


def test_amqp_links_pair_a_publisher_and_a_consumer_of_one_queue_or_exchange():
    chain = chain_of(
        source={"role": "listener", "source": "simulated",
                "out": "amqp://u:p@127.0.0.1:5672/%2F?queue=frames"},
        operator={"role": "operator", "in": "amqp://localhost?queue=frames",
                  "out": "amqps://broker/arroyo?exchange=results&routing_key=r"},
        sink={"role": "publisher", "in": "amqps://broker:5671/arroyo",
              "in_options": {"exchange": "results", "queue": "mine"}})
    assert chain.problems() == []
    pairs = {(seeker.service, found.service) for seeker, found in chain.links()}
    assert pairs == {("operator", "source"), ("sink", "operator")}  # (consumer, publisher)
    assert chain.order() == ["source", "operator", "sink"]


@pytest.mark.parametrize("reader", [
    "amqp://127.0.0.1/%2F?queue=other",             # another queue
    "amqp://127.0.0.1/arroyo?queue=frames",         # another vhost
    "amqp://127.0.0.1:5673/%2F?queue=frames",       # another broker
    "amqp://127.0.0.1/%2F?exchange=frames",         # an exchange, not the queue
])
def test_an_amqp_consumer_that_no_service_publishes_to_is_a_problem(reader):
    chain = chain_of(source={"role": "listener", "source": "simulated",
                             "out": "amqp://127.0.0.1/%2F?queue=frames"},
                     sink={"role": "publisher", "in": reader})
    [problem] = chain.problems()
    assert problem.startswith(f"[sink] in >{reader}: no service in the chain writes")


def test_writers_of_one_stream_do_not_clash_like_binds():
    writer = {"role": "listener", "source": "simulated", "out": "redis://h:6379/0?stream=s"}
    chain = chain_of(a=writer, b=writer, sink={"role": "publisher",
                                                "in": "redis://h:6379/0?stream=s"})
    assert chain.problems() == []
    assert len(chain.links()) == 2


def test_addresses_of_a_scheme_the_checker_does_not_know_are_only_parsed():
    chain = chain_of(source={"role": "listener", "source": "simulated", "out": "rdma://frames"},
                     sink={"role": "publisher", "in": "rdma://frames"})
    assert chain.problems() == [] and chain.links() == []
    with pytest.raises(ConfigError, match=r"\[sink\] in: 'rdma:/frames' is not a valid address"):
        chain_of(sink={"role": "publisher", "in": "rdma:/frames"})


def test_shm_links_meet_as_tcp_ones_do_by_host_and_port_or_by_path():
    """The same chain on shm:// by changing only its addresses."""
    chain = chain_of(**{name: {key: value.replace("tcp://", "shm://") if key in ("in", "out")
                               else value for key, value in service.items()}
                        for name, service in (("source", SOURCE), ("operator", OPERATOR),
                                              ("sink", SINK))})
    assert chain.problems() == [] and len(chain.links()) == 2
    assert chain.order() == ["source", "operator", "sink"]
    by_path = chain_of(source={"role": "listener", "source": "simulated",
                               "out": "@shm:///run/a/hop"},
                       sink={"role": "publisher", "in": ">shm:///run/a/hop"})
    assert by_path.problems() == [] and len(by_path.links()) == 1
    wrong = chain_of(source=SOURCE, sink={"role": "publisher", "in": ">shm://{source}:5555"})
    assert any("shm://" in problem for problem in wrong.problems())


def test_generated_supervisor_programs_run_the_chain_file_by_name():
    """supervisord's own parser reads the committed conf.d/arroyo.conf: each program runs
    `arroyo service` on deploy/chain.toml (found through %(here)s) and its own name."""
    import shlex

    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.realize(args=["-c", str(ROOT / "deploy/supervisor/supervisord.conf")])
    [group] = options.process_group_configs
    commands = {program.name: shlex.split(program.command) for program in group.process_configs}
    assert set(commands) == {"source", "operator", "sink"}
    ports = {"source": 9400, "operator": 9401, "sink": 9402}  # metrics on, one port each
    for name, words in commands.items():
        assert words[:2] == ["arroyo", "service"]
        assert words[3:] == [name, "--metrics", f":{ports[name]}"]
        assert Path(words[2]).resolve() == DEFAULT_CHAIN
    for program in group.process_configs:  # each runs in the chain file's directory
        assert Path(program.directory).resolve() == DEFAULT_CHAIN.parent


def test_supervisor_default_chain_path_is_absolute_with_percent_escaped(tmp_path):
    directory = tmp_path / "100%"
    directory.mkdir()
    (directory / "c.toml").write_text(DEFAULT_CHAIN.read_text())
    result = _invoke(["deploy", "supervisor", str(directory / "c.toml")])
    assert result.exit_code == 0, result.output
    assert f"command=arroyo service {tmp_path}/100%%/c.toml sink --metrics :9402\n" in result.output


def test_generated_compose_services_mount_the_chain_directory_and_run_it_by_name(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        port = {"source": 9400, "operator": 9401, "sink": 9402}[name]
        assert service["command"] == ["service", "/etc/arroyo/chain.toml", name,
                                      "--target", "compose", "--metrics", f":{port}"]
        assert service["volumes"] == ["./deploy:/etc/arroyo:ro"]  # the chain file's directory
        assert service["working_dir"] == "/etc/arroyo"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"services": {"source": SOURCE}}))
    (tmp_path / "out").mkdir()
    result = _invoke(["deploy", "compose", str(tmp_path / "c.yaml"),
                      "-o", str(tmp_path / "out" / "compose.yml")])
    assert result.exit_code == 0, result.output
    service = yaml.safe_load((tmp_path / "out" / "compose.yml").read_text())["services"]["source"]
    assert service["command"] == ["service", "/etc/arroyo/c.yaml", "source", "--target", "compose",
                                  "--metrics", ":9400"]
    assert service["volumes"] == ["..:/etc/arroyo:ro"]  # from the compose file


def test_one_key_makes_every_link_of_a_chain_reliable():
    chain = parse_chain({"name": "t", "reliable": True, "services": {
        "source": SOURCE, "operator": {**OPERATOR, "out_options": {"window": 8}},
        "sink": {**SINK, "in_options": {"reliable": False}}}})
    assert chain.resolve("source")["out_options"] == {"reliable": True}
    assert not chain.resolve("source")["in_options"]  # a source has no input link
    assert chain.resolve("operator")["in_options"] == {"reliable": True}
    assert chain.resolve("operator")["out_options"] == {"reliable": True, "window": 8}
    assert chain.resolve("sink")["in_options"] == {"reliable": False}  # a link says otherwise
    plain = chain_of(source=SOURCE, operator=OPERATOR, sink=SINK)
    assert not plain.resolve("operator")["out_options"]
    with pytest.raises(ConfigError, match="'reliable' is true or false"):
        parse_chain({"name": "t", "reliable": "yes", "services": {"source": SOURCE}})
