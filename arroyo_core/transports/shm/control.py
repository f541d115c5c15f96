"""What goes over the control socket (ZeroMQ ROUTER at the sender, DEALER at each receiver).

Receiver to sender, each a kind frame then a msgpack body:

- ``H`` hello ``{"pid", "start", "host"}``: who the receiver is (sent on each connection);
- ``T`` took ``[id, ...]``: these messages are off the socket and their slots are held
  by the receiver itself, so the sender may forget them;
- ``B`` bye: the receiver closes;
- ``A`` answer ``[kind, src, seq]``, on a reliable link only: ``ack`` (finished every
  message of sender ``src`` up to ``seq``) or ``hello`` (has everything before ``seq``;
  ``src`` empty: knows nothing), as docs/protocol.md section 12.2 says for tcp.

Sender to receiver: a msgpack ``[id, refs]`` frame, the message's header frame, then the
payload buffers sent inline. ``refs`` has one entry per payload buffer: ``None`` for the
next inline frame, or ``[pool, slot, generation, offset, length]`` for bytes in a pool
(:class:`~.attached.SlotRef`). On a reliable link the header frame's place is taken by
the reliable carriage frame, which holds the header. Everything read from the
network is checked here and never unpickled.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ...errors import DecodeError
from .attached import SlotRef
from .processes import Identity

HELLO, TOOK, BYE, ANSWER = b"H", b"T", b"B", b"A"
ANSWERS = ("ack", "hello")


def hello(identity: Identity, host: str) -> list[bytes]:
    return [HELLO, msgpack.packb({"pid": identity.pid, "start": identity.start, "host": host})]


def read_hello(body: bytes) -> tuple[Identity, str] | None:
    """The receiver a hello names, None if it is not a valid hello."""
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
        pid, start, host = fields["pid"], fields["start"], fields["host"]
    except Exception:  # msgpack raises several unrelated types for bad bytes
        return None
    if not (type(pid) is int and type(start) is int and isinstance(host, str) and pid > 0):
        return None
    return Identity(pid, start), host


def took(ids: list[int]) -> list[bytes]:
    return [TOOK, msgpack.packb(ids)]


def read_took(body: bytes) -> list[int]:
    try:
        ids = msgpack.unpackb(body)
    except Exception:
        return []
    return [i for i in ids if type(i) is int] if isinstance(ids, list) else []


def answer(kind: str, src: str, seq: int) -> list[bytes]:
    return [ANSWER, msgpack.packb([kind, src, seq])]


def read_answer(body: bytes) -> tuple[str, str, int] | None:
    """``(kind, src, seq)`` of an answer's body, None if it is not a valid one."""
    try:
        said = msgpack.unpackb(body, raw=False)
    except Exception:  # msgpack raises several unrelated types for bad bytes
        return None
    if not (isinstance(said, list) and len(said) == 3 and said[0] in ANSWERS
            and isinstance(said[1], str) and type(said[2]) is int and said[2] >= 0):
        return None
    return said[0], said[1], said[2]


def message_head(message_id: int, refs: list[SlotRef | None]) -> bytes:
    return msgpack.packb([message_id, [None if r is None else list(r) for r in refs]])


def read_message(frames: list[Any]) -> tuple[int, list[Any], list[SlotRef | None]]:
    """(id, frames of the message with slot references in place, references); the
    frames hold None where a slot goes. DecodeError if the head is not valid."""
    if len(frames) < 2:
        raise DecodeError("frames", f"a shm message of {len(frames)} frame(s)")
    try:
        head = msgpack.unpackb(frames[0], raw=False)
    except Exception as exc:
        raise DecodeError("msgpack", f"shm message head is not msgpack ({exc})") from None
    if not (isinstance(head, list) and len(head) == 2 and type(head[0]) is int
            and isinstance(head[1], list)):
        raise DecodeError("header", "shm message head is not [id, refs]")
    message_id, refs = head
    out: list[Any] = [frames[1]]
    slot_refs: list[SlotRef | None] = []
    inline = iter(frames[2:])
    for ref in refs:
        if ref is None:
            frame = next(inline, None)
            if frame is None:
                raise DecodeError("frames", "shm message names more inline frames than came")
            out.append(frame)
            slot_refs.append(None)
            continue
        if not (isinstance(ref, list) and len(ref) == 5 and isinstance(ref[0], str)
                and all(type(v) is int and v >= 0 for v in ref[1:])):
            raise DecodeError("header", f"slot reference {str(ref)[:80]} is not "
                              "[pool, slot, generation, offset, length]")
        out.append(None)
        slot_refs.append(SlotRef(*ref))
    if next(inline, None) is not None:
        raise DecodeError("frames", "shm message has more inline frames than it names")
    return message_id, out, slot_refs
