"""The recording file (services.recording) and progress output when not on a terminal."""

from __future__ import annotations

import io

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.errors import ConfigError
from services.progress import Progress
from services.recording import Recording, RecordingWriter


def test_frames_come_back_byte_for_byte_with_their_times(tmp_path):
    path = tmp_path / "r.arroyo"
    writer = RecordingWriter(path, ">tcp://host:5555")
    array = np.arange(1000, dtype=np.uint16)
    writer.write([b"header", memoryview(array).cast("B")], arrived=10.0)
    writer.write([zmq.Frame(b"\x00\xff" * 3)], arrived=10.5)
    writer.close()
    recording = Recording(path)
    assert recording.header["address"] == ">tcp://host:5555"
    assert list(recording.messages()) == [(0.0, [b"header", array.tobytes()]),
                                          (0.5, [b"\x00\xff" * 3])]
    assert recording.count() == (2, 0.5)
    recording.close()


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "r.arroyo").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="cannot write a recording"):
        RecordingWriter(tmp_path / "r.arroyo", "x")
    assert (tmp_path / "r.arroyo").read_bytes() == b"precious"


@pytest.mark.parametrize("content", [b"", b"not msgpack \xc1", msgpack.packb({"a": 1}),
                                     msgpack.packb({"arroyo_recording": 99})])
def test_a_file_that_is_not_a_recording_is_refused(tmp_path, content):
    (tmp_path / "x").write_bytes(content)
    with pytest.raises(ConfigError, match="is not an Arroyo recording"):
        Recording(tmp_path / "x")


def test_a_message_of_the_wrong_shape_is_refused_after_the_good_ones(tmp_path):
    path = tmp_path / "r.arroyo"
    writer = RecordingWriter(path, "x")
    writer.write([b"one"])
    writer.close()
    with path.open("ab") as file:
        file.write(msgpack.packb(["a pickle?", b"x"]))
    recording = Recording(path)
    messages = recording.messages()
    assert next(messages) == (0.0, [b"one"])
    with pytest.raises(ConfigError, match="message 1 is not"):
        next(messages)
    recording.close()


def test_progress_off_a_terminal_is_plain_lines_ending_with_the_final_figures():
    out = io.StringIO()
    with Progress("replay", total=10, unit="messages", stream=out) as progress:
        for done in range(1, 11):
            progress.update(done, f"{done} MB")
    lines = out.getvalue().splitlines()
    assert lines[0] == "replay: 1/10 messages  1 MB"  # the first at once, then one a second
    assert lines[-1] == "replay: 10/10 messages  10 MB"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
