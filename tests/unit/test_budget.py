"""Byte budgets become high-water marks by the documented rule; memory_limit is shared out."""

import pytest

from arroyo_core.budget import (
    OVERHEAD_BYTES,
    LinkBudget,
    frames_nbytes,
    parse_bytes,
    split_memory_limit,
)
from arroyo_core.errors import ConfigError

MiB = 2**20


@pytest.mark.parametrize("text,size", [(4096, 4096), ("64MiB", 64 * MiB), ("1.5 GB", 1_500_000_000),
                                       ("512k", 512_000), ("2gib", 2 * 2**30)])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("bad", ["lots", "12 parsecs", 0, -5, True, ""])
def test_parse_bytes_rejects_what_is_not_a_size(bad):
    with pytest.raises(ConfigError):
        parse_bytes(bad)


def test_configured_message_size_sets_the_mark_from_the_start():
    budget = LinkBudget("64MiB", message_bytes="1MiB", peers=2)
    assert budget.hwm(default=100) == 32  # 64 MiB over (1 MiB x 2 peers)


def test_learned_size_lowers_the_mark_and_never_raises_it():
    budget = LinkBudget(100 * MiB)
    assert budget.hwm(default=100) == 100  # nothing seen yet
    assert budget.observe(MiB) == 100
    assert budget.observe(4 * MiB) == 25
    assert budget.observe(MiB) is None  # smaller again: the mark stays down
    assert budget.observe(4 * MiB) is None
    assert budget.observe(200 * MiB) == 1  # one message larger than the budget still passes
    assert budget.stats() == {"max_bytes": 100 * MiB, "message_bytes": 200 * MiB, "hwm": 1}


def test_frames_nbytes_counts_every_frame_and_its_overhead():
    assert frames_nbytes([b"h" * 10, bytearray(100), memoryview(b"x" * 1000)]) == (
        1110 + 3 * OVERHEAD_BYTES)


def test_memory_limit_is_shared_between_input_queue_and_outputs():
    config = split_memory_limit({"memory_limit": "90MiB", "in": ">tcp://a:1",
                                 "out": ["@tcp://*:2", "@tcp://*:3"],
                                 "out_options": {"overflow": "drop-newest"}})
    assert config["queue_bytes"] == 30 * MiB
    assert config["in_options"] == {"max_bytes": 30 * MiB}
    assert config["out_options"] == {"overflow": "drop-newest", "max_bytes": 15 * MiB}


def test_explicit_settings_win_over_the_memory_limit():
    config = split_memory_limit({"memory_limit": "20MiB", "out": "@tcp://*:2",
                                 "queue_bytes": 5, "out_options": {"max_bytes": 7}})
    assert config["queue_bytes"] == 5 and config["out_options"]["max_bytes"] == 7
    assert split_memory_limit({"out": "@tcp://*:2"}) == {"out": "@tcp://*:2"}
