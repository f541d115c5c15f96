"""The ``files`` source's state file and how it names runs, without a watcher."""

from __future__ import annotations

import pytest

pytest.importorskip("watchfiles")

from arroyo_core.files import NewFiles  # noqa: E402
from arroyo_core.files.state import ReadFiles  # noqa: E402


def test_files_read_are_remembered_across_a_restart_and_a_torn_line_is_ignored(tmp_path):
    state = ReadFiles(tmp_path / "state.jsonl")
    state.add("a.tif", 100, 5, images=1)
    state.add("b.h5", 200, 6, images=3)
    state.close()
    with (tmp_path / "state.jsonl").open("a") as f:
        f.write('{"file": "c.tif", "si')  # a crash while writing c.tif's line
    again = ReadFiles(tmp_path / "state.jsonl")
    assert again.seen("a.tif", 100, 5) and again.seen("b.h5", 200, 6)
    assert not again.seen("c.tif", 1, 1)  # read again: at least once
    assert not again.seen("a.tif", 101, 7)  # a file that changed is read again
    again.close()
    assert len((tmp_path / "state.jsonl").read_text().splitlines()) == 2  # compacted


def test_a_run_is_the_directory_or_what_the_pattern_names(tmp_path):
    by_directory = NewFiles(str(tmp_path))
    assert by_directory._run_of("scan3/img_0001.tif") == "scan3"
    assert by_directory._run_of("img_0001.tif") == tmp_path.name
    named = NewFiles(str(tmp_path), run_pattern=r"sample_(?P<run>\w+?)_\d+\.cbf$")
    assert named._run_of("sample_lysozyme_0007.cbf") == "lysozyme"
    assert named._run_of("other.cbf") == tmp_path.name  # no match: its directory
    assert NewFiles(str(tmp_path), run_pattern=r"^(\w+)-")._run_of("b12-0001.tif") == "b12"
