"""Redis addresses: what they make, how they are named, what is refused (no connection is
made: links connect on open)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError
from arroyo_core.link import InputLink, OutputLink
from arroyo_core.transport import transport_for

pytest.importorskip("redis")
from arroyo_core.transports.redis import (  # noqa: E402  (needs redis-py)
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisStreamListener,
    RedisStreamPublisher,
    RedisTransport,
)
from arroyo_core.transports.redis.pubsub import PubSubReceiver, PubSubSender  # noqa: E402
from arroyo_core.transports.redis.streams import StreamReceiver, StreamSender  # noqa: E402

URL = "redis://:s3cret%40x@127.0.0.1:6379/2"
PACKAGE = Path(__file__).resolve().parents[2] / "arroyo_core" / "transports" / "redis"


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_both_schemes_are_the_redis_transport(scheme):
    assert isinstance(transport_for(Address.parse(f"{scheme}://h/0?stream=s", True)),
                      RedisTransport)


def test_a_stream_address_makes_a_stream_sender_and_an_acknowledging_receiver():
    output = OutputLink(URL + "?stream=frames&maxlen=5&outage=drop&max_backoff=0.5")
    sender = output.sender
    assert isinstance(sender, StreamSender) and not sender.numbers_drops
    assert (sender.stream, sender.maxlen, sender.outage) == ("frames", 5, "drop")
    assert sender.connection.max_backoff == 0.5
    link = InputLink(URL + "?stream=frames&group=g&consumer=c1&block_ms=20")
    receiver = link.receiver
    assert isinstance(receiver, StreamReceiver) and receiver.acknowledges
    assert (receiver.group, receiver.consumer, receiver.block_ms) == ("g", "c1", 20)
    assert receiver.connection.url == URL  # the query is the link's, not redis-py's


def test_a_channel_address_makes_a_pubsub_sender_that_numbers_its_drops():
    sender = OutputLink(URL + "?channel=live&subscribers=2").sender
    assert isinstance(sender, PubSubSender) and sender.numbers_drops
    assert sender.expected_subscribers == 2
    receiver = InputLink(URL + "?channel=live").receiver
    assert isinstance(receiver, PubSubReceiver) and not receiver.acknowledges


def test_keys_may_come_as_options_instead_of_the_query():
    by_query = OutputLink(URL + "?stream=frames&maxlen=7")
    by_option = OutputLink(URL, stream="frames", maxlen=7)
    assert by_query.ledger.link == by_option.ledger.link
    assert by_query.sender.maxlen == by_option.sender.maxlen == 7  # type: ignore[attr-defined]


def test_the_link_name_hides_the_password():
    for link in (OutputLink(URL + "?stream=frames"), InputLink(URL + "?channel=live"),
                 RedisStreamListener(URL, "frames", group="g")):
        name = link.ledger.link
        assert "s3cret" not in name and ":***@127.0.0.1:6379/2" in name
        assert "s3cret" not in str(link.stats())
    assert OutputLink(URL + "?stream=f").ledger.link == (
        "output stream 'f' at redis://:***@127.0.0.1:6379/2")


@pytest.mark.parametrize("query, says", [("", "neither"), ("?stream=", "neither"),
                                         ("?stream=a&channel=b", "stream and channel")])
def test_an_address_names_exactly_one_of_stream_and_channel(query, says):
    with pytest.raises(ConfigError, match=f"exactly one of .*{says}"):
        OutputLink(URL + query)
    with pytest.raises(ConfigError, match=f"exactly one of .*{says}"):
        InputLink(URL + query)


@pytest.mark.parametrize("make", [
    lambda: OutputLink(URL + "?stream=s&group=g"),           # a receiver's option
    lambda: OutputLink(URL + "?stream=s&hwm=10"),            # a ZeroMQ option
    lambda: OutputLink(URL + "?stream=s&maxlen=many"),       # not a number
    lambda: OutputLink(URL + "?stream=s&outage=retry"),      # not a policy
    lambda: InputLink(URL + "?channel=c&max_backoff=soon"),  # not a number
    lambda: InputLink(URL + "?stream=s&consumer="),          # an empty name
    lambda: InputLink(URL + "?stream=s&ssl_ca_certs=ca.pem"),  # TLS options, no TLS
])
def test_options_a_link_does_not_take_are_config_errors_naming_the_link(make):
    with pytest.raises(ConfigError, match=r"^(in|out)put (stream|channel) '.'( group '.')? at redis://"
                       r":\*\*\*@127.0.0.1:6379/2: ") as error:
        make()
    assert "s3cret" not in str(error.value)


def test_tls_options_go_to_a_rediss_client():
    sender = OutputLink("rediss://h:6380/0?stream=s&ssl_ca_certs=ca.pem&ssl_cert_reqs=required"
                        ).sender
    kwargs = sender.connection.kwargs  # type: ignore[attr-defined]
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_cert_reqs"]) == ("ca.pem", "required")


def test_plug_in_names_build_the_same_links():
    assert (RedisStreamPublisher(URL, "frames").ledger.link
            == OutputLink(URL + "?stream=frames").ledger.link)
    assert (RedisStreamListener(URL, stream="frames", group="g").ledger.link
            == InputLink(URL + "?stream=frames&group=g").ledger.link)
    assert isinstance(RedisPubSubPublisher(URL, "c", subscribers=1).sender, PubSubSender)
    assert isinstance(RedisPubSubListener(URL, "c").receiver, PubSubReceiver)
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisPubSubPublisher("http://example.org", channel="c")
    with pytest.raises(ConfigError, match=r"tcp://:\*\*\*@h is not a Redis URL"):
        RedisStreamListener("tcp://:pw@h", stream="s")


def test_the_redis_package_imports_no_other_transport_and_no_service():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
            elif isinstance(node, ast.Import):
                module = ",".join(alias.name for alias in node.names)
            else:
                continue
            assert "zmq" not in module and "services" not in module, (path.name, module)
