"""`arroyo run` echoes its services' lines to stdout while saying its own on stderr; both
may share one pipe, so each echoed line must reach it in one write."""

import io

from services.processes import echo_line


class RecordedWrites(io.RawIOBase):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)


def test_an_echoed_line_is_one_write_even_unbuffered(monkeypatch):
    raw = RecordedWrites()
    # what sys.stdout is under PYTHONUNBUFFERED=1: every write goes straight to the pipe
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, write_through=True))
    echo_line("  [operator] operator ready")
    echo_line("  [sink] sink ready")
    assert raw.writes == [b"  [operator] operator ready\n", b"  [sink] sink ready\n"]
