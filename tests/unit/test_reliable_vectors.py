"""The reliable link's test vectors of docs/protocol.md section 12, read out of the
document: the carriage frame the reference writes, and the answers a receiver sends."""

from __future__ import annotations

from pathlib import Path

from arroyo_core.batch import decode_batch
from arroyo_core.reliable import carriage, read_carriage
from arroyo_core.transports.zmq.reliable import answer_frames, read_answer
from arroyo_core.wire import DEFAULT_LIMITS
from tests.unit.test_protocol_vectors import parse_vectors

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def section_12() -> dict[str, list[bytes]]:
    text = PROTOCOL.read_text(encoding="utf-8").split("## 12. ")[1]
    return parse_vectors(text.replace("```hexdump reliable\n", "```hexdump\n"))


def test_the_section_holds_its_three_vectors():
    assert sorted(section_12()) == ["ack", "carriage", "hello"]


def test_the_carriage_frame_is_what_the_reference_writes_and_reads():
    """Section 9's batch, sent reliably: its header inside the carriage, its data after."""
    batch = parse_vectors(PROTOCOL.read_text(encoding="utf-8").split("## 9. ")[1]
                          .split("## 10. ")[0])["batch"]
    frame, data = section_12()["carriage"]
    assert carriage(2, [["det-1", 4, 0, 2]], batch[0]) == frame and data == batch[1]
    assert read_carriage(frame) == (2, [["det-1", 4, 0, 2]], batch[0])
    messages, envelope = decode_batch([batch[0], data], DEFAULT_LIMITS)
    assert (envelope.src, envelope.seq, len(messages)) == ("det-1", 4, 2)


def test_the_answers_are_what_the_receiver_sends_and_the_sender_reads():
    vectors = section_12()
    assert answer_frames("ack", "det-1", 5) == vectors["ack"]
    assert answer_frames("hello", "det-1", 6) == vectors["hello"]
    assert read_answer(vectors["ack"]) == ("ack", "det-1", 5)
    assert read_answer(vectors["hello"]) == ("hello", "det-1", 6)
    assert read_answer([b"hello", b"", b"0"]) == ("hello", "", 0)  # knows nothing
    assert read_answer([b"nack", b"det-1", b"6"]) is None
    assert read_answer([b"ack", b"det-1", b"-1"]) is None
