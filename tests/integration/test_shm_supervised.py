"""shm:// under a real supervisord, with the middle stage killed (kill -9) three times:
the same chain file as tests/integration/test_every_loss.py but for its addresses.

source --shm--> middle --shm (PATTERN)--> forwarder --tcp--> an independent receiver

The middle is a receiver of the first hop (holding the source's slots when killed) and
the sender of the second: with ``passthrough`` it forwards the source's slots by
reference, with ``downsample`` it owns a pool of its own (left behind by each kill until
its restarted instance, or the forwarder, removes it). For each:

- the loss `arroyo status` reports equals the true loss (frames the source sent minus
  distinct frames the independent receiver got), with no duplicates;
- the source's pool has no slot held by a dead middle at the end: every slot is free, but
  for the last frame a live receiver may still hold when the source closes (the restarted
  middle, or the forwarder a passthrough middle gave the source's slot on to);
- nothing is left in /dev/shm once supervisord has stopped the chain.
"""

from __future__ import annotations

import os
import re

import pytest

from arroyo_core.transports.shm.pool import DIRECTORY, PREFIX
from tests.support.kills import describe, run_kills
from tests.support.ledgers import logged_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 5000  # at 500 frames/s: 10 s, longer than the kills take
SHAPE = 256  # uint16: 128 KiB frames, through slots (smaller ones go inline)


def pools() -> set[str]:
    return {name for name in os.listdir(DIRECTORY) if name.startswith(PREFIX)}


@pytest.mark.parametrize("pattern,operator", [("push", "passthrough"), ("pub", "downsample")])
def test_killed_middle_loss_is_true_loss_slots_come_back_and_dev_shm_is_clean(
        tmp_path, pattern, operator):
    before = pools()
    outcome = run_kills(tmp_path, pattern, frames=FRAMES, shape=SHAPE,
                        schedule=(1.0, 0.0, 1.0), scheme="shm", operator=operator)
    print("\n" + describe(outcome) + "\n" + outcome.table)

    assert len(outcome.kills) == 3, outcome.log
    assert all(kill.resumed is not None for kill in outcome.kills), describe(outcome)
    (run, sent), = outcome.frames_sent.items()
    assert sent == FRAMES, "the run ended before every kill"
    assert outcome.duplicates == 0
    record = outcome.reported[run]
    assert record["complete"] and record["expected"] == FRAMES
    assert record["missing"] == outcome.true_loss, describe(outcome)
    assert outcome.states["middle"] == "RUNNING"

    source = logged_ledger(outcome.source_log)["outputs"][0]["pool"]
    joined = re.findall(r"receiver pid (\d+) joined", outcome.source_log)
    killed = set(joined[:-1])  # every middle but the one running now
    held = re.search(r"still held \(by pids \{(.*?)\}\)", outcome.source_log)
    holders = dict(re.findall(r"(\d+): (\d+)", held[1])) if held else {}
    assert not killed & set(holders), outcome.source_log[-4000:]  # none leaked to the dead
    held_by_live = sum(int(count) for count in holders.values())
    assert source["free"] + held_by_live == source["slots"] and held_by_live <= 2, holders
    assert not (pools() - before), "pools left in /dev/shm"
