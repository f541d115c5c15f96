"""``arroyo record`` and ``arroyo replay``: a stream to a file and back, byte for byte.

Recording receives from a link through its transport (on ZeroMQ a SUB on a PUB link,
counted as one of its subscribers unless ``tap``; or any pattern and transport the
address and options say) and writes each message's frames as they came
(:mod:`services.recording`). Replaying sends those frames, unchanged, through the
transport of another address: the same headers (sender ids, sequence numbers, run ids
and frame numbers), the same payload bytes, at the recorded pace, a multiple of it, or
as fast as the receivers take them; it waits for peers before each Start, as a service
does. So the ledgers of whatever receives a replay count the same run as the original.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError, DecodeError
from arroyo_core.transport import transport_for
from arroyo_core.wire import DEFAULT_LIMITS, read_header

from .progress import Progress
from .recording import Recording, RecordingWriter
from .tap import TapSummary, open_receiver, received

# A replay reads each message's kind from its header whatever its size.
HEADER_ONLY = dataclasses.replace(DEFAULT_LIMITS, max_message_bytes=2**62)


@dataclass
class Recorded:
    messages: int  # wire messages written
    bytes: int
    events: int
    runs: int  # Stops seen
    missing: int  # sequence numbers the recorder never got
    seconds: float


def record(address: str, path: str, pattern: str | None, options: dict[str, Any], tap: bool,
           runs: int | None, count: int | None, seconds: float | None,
           stop: threading.Event, ready: Callable[[str], None] = print) -> Recorded:
    """Record from ``address`` into a new file at ``path`` until ``runs`` Stops, ``count``
    messages (a batch's Events each), ``seconds`` or ``stop`` (whichever first); say
    ``READY record`` through ``ready`` once listening."""
    receiver, name = open_receiver(address, pattern, options, tap, "record")
    writer = None
    try:
        writer = RecordingWriter(path, address)
        summary = TapSummary(name, headers=0)
        ready(f"READY record {name} -> {path}")
        began = time.monotonic()
        deadline = began + seconds if seconds else None
        stops, events = 0, 0
        with Progress("record", total=count, unit="messages") as progress:
            watch = threading.Thread(target=_stop_at, args=(deadline, stop), daemon=True)
            watch.start()
            for frames in received(receiver, stop):
                writer.write(frames)
                summary.observe(frames)  # counts, and the ledger of seq numbers
                kinds = _kinds(frames)
                events += sum(kind in ("event", "batch") for kind in kinds)
                stops += kinds.count("stop")
                progress.update(summary.messages, f"{_mb(writer.bytes)}, {stops} run(s) ended")
                if ((runs and stops >= runs) or (count and summary.messages >= count)
                        or stop.is_set()):
                    break
            stop.set()
        return Recorded(writer.messages, writer.bytes, events, stops,
                        summary.ledger.status().missing, time.monotonic() - began)
    finally:
        receiver.close()
        if writer is not None:
            writer.close()


def _stop_at(deadline: float | None, stop: threading.Event) -> None:
    if deadline is not None:
        stop.wait(max(0.0, deadline - time.monotonic()))
        stop.set()


def _kinds(frames: Any) -> list[str]:
    try:
        header = read_header(frames, HEADER_ONLY)
    except DecodeError:
        return []
    kind = header.get("kind")
    if kind == "batch":
        events = header.get("events")
        return ["event"] * (len(events) if isinstance(events, list) else 0)
    return [kind] if isinstance(kind, str) else []


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


@dataclass
class Replayed:
    messages: int
    bytes: int
    dropped: int  # refused by the transport (an overflow policy), by the count
    seconds: float  # from the first message sent to the last
    recorded_seconds: float  # from the first message recorded to the last


def replay(path: str, address: str, pattern: str | None, options: dict[str, Any],
           speed: float, ready: Callable[[str], None] = print) -> Replayed:
    """Send the recording at ``path`` to ``address`` (binding unless it starts with
    ``>``): at the recorded pace times ``speed`` (0: as fast as the receivers take it)."""
    recording = Recording(path)
    try:
        total, length = recording.count()
        target = Address.parse(address, bind_by_default=True)
        transport = transport_for(target)
        options = {**target.query, **options}
        if pattern:
            options["pattern"] = pattern
        name = f"replay {transport.name(target, options)}"
        try:
            sender = transport.sender(target, options, name)
        except TypeError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        sender.open()
        try:
            ready(f"READY replay {name}" + (f" out={sender.bound}" if sender.bound else ""))
            return _send_all(recording, sender, total, length, speed)
        finally:
            sender.close()
    finally:
        recording.close()


def _send_all(recording: Recording, sender: Any, total: int, length: float,
              speed: float) -> Replayed:
    sent = nbytes = dropped = 0
    began: float | None = None
    with Progress("replay", total=total, unit="messages") as progress:
        for at, frames in recording.messages():
            kinds = _kinds(frames)
            if "start" in kinds:
                sender.wait_for_peers()  # as a service does before a run
                sender.run_state(True)
            if began is None:
                began = time.monotonic()
            elif speed > 0:
                wait = began + at / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # the recorded pace
            if sender.send(list(frames), kinds == ["event"] or len(kinds) > 1) is None:
                sent += 1
                nbytes += sum(map(len, frames))
            else:
                dropped += 1
            if "stop" in kinds:
                sender.run_state(False)
            progress.update(sent + dropped, _mb(nbytes))
    seconds = time.monotonic() - began if began is not None else 0.0
    return Replayed(sent, nbytes, dropped, seconds, length)
