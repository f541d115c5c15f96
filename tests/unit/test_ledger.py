"""InputLedger: per-sender sequence accounting of gaps, duplicates and malformed messages."""

from __future__ import annotations

import logging

from arroyo_core.ledger import MAX_RANGES, InputLedger, OutputLedger


def observe_all(ledger: InputLedger, src: str, seqs) -> list[bool]:
    return [ledger.observe(src, seq) for seq in seqs]


def test_an_unbroken_sequence_has_no_loss():
    ledger = InputLedger("in")
    assert all(observe_all(ledger, "a", range(100)))
    stats = ledger.stats()
    assert (stats["received"], stats["missing"], stats["duplicates"]) == (100, 0, 0)
    assert stats["senders"]["a"]["next_seq"] == 100


def test_a_gap_is_counted_exactly_with_its_range(caplog):
    ledger = InputLedger("in")
    with caplog.at_level(logging.WARNING):
        assert all(observe_all(ledger, "a", [0, 1, 5, 6, 10]))
    stats = ledger.stats()
    assert stats["missing"] == 3 + 3
    assert stats["senders"]["a"]["missing_ranges"] == [[2, 4], [7, 9]]
    assert stats["received"] == 5
    assert "lost messages 2..4" in caplog.text


def test_duplicates_and_late_messages_are_counted_and_not_delivered():
    ledger = InputLedger("in")
    delivered = observe_all(ledger, "a", [0, 1, 1, 2, 0, 5, 3])
    assert delivered == [True, True, False, True, False, True, False]
    stats = ledger.stats()["senders"]["a"]
    assert stats["duplicates"] == 3
    assert stats["missing"] == 2  # 3 and 4; 3 arriving late does not undo the count
    assert stats["received"] == 4


def test_a_new_sender_joining_mid_stream_is_not_a_loss(caplog):
    ledger = InputLedger("in")
    with caplog.at_level(logging.INFO):
        assert all(observe_all(ledger, "late", [1000, 1001]))
    assert ledger.stats()["missing"] == 0
    assert "first message from sender late has seq 1000" in caplog.text


def test_senders_are_counted_independently():
    """Fan-in: two senders, and a restarted sender (new src) beginning again at 0."""
    ledger = InputLedger("in")
    for seq in range(5):
        ledger.observe("a", seq)
        ledger.observe("b", seq * 2)  # b loses every other message
    assert ledger.observe("a-restarted", 0)
    stats = ledger.stats()
    assert stats["senders"]["a"]["missing"] == 0
    assert stats["senders"]["b"]["missing"] == 4
    expected = {"received": 1, "next_seq": 1, "missing": 0, "missing_ranges": [],
                "duplicates": 0}
    assert {k: stats["senders"]["a-restarted"][k] for k in expected} == expected
    assert stats["received"] == 11 and stats["missing"] == 4


def test_missing_ranges_are_capped_but_the_count_stays_exact():
    ledger = InputLedger("in")
    observe_all(ledger, "a", range(0, 4 * (MAX_RANGES + 10), 2))
    stats = ledger.stats()["senders"]["a"]
    assert len(stats["missing_ranges"]) == MAX_RANGES
    assert stats["missing"] == 2 * (MAX_RANGES + 10) - 1


def test_malformed_messages_are_counted_by_reason_and_logged_once(caplog):
    ledger = InputLedger("in")
    with caplog.at_level(logging.ERROR):
        for reason in ["msgpack", "length", "msgpack", "msgpack"]:
            ledger.reject(reason, f"{reason}: detail")
    assert ledger.stats()["malformed"] == {"msgpack": 3, "length": 1}
    assert caplog.text.count("rejected a malformed message") == 2


def test_output_ledger_counts_drops_by_reason(caplog):
    ledger = OutputLedger("out")
    ledger.sent = 3
    with caplog.at_level(logging.WARNING):
        ledger.drop("full")
        ledger.drop("full")
        ledger.drop("gone")
    assert ledger.stats() == {"link": "out", "sent": 3, "dropped": {"full": 2, "gone": 1}}
    assert caplog.text.count("dropped a message") == 2
