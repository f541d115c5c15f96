"""docs/protocol.md's sender without Arroyo (``send_frames.py``), taken out of the page as
it is written there, imports nothing of Arroyo and feeds a real ``arroyo publisher``
service one whole run: every frame arrives, none malformed, none lost."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_doc_snippets import snippets
from tests.support.ledgers import sink_runs, status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PAGE = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def sender_block() -> str:
    found = [s.text for s in snippets(PAGE) if s.file_name == "send_frames.py"]
    assert len(found) == 1, "docs/protocol.md must show send_frames.py once"
    return found[0]


def test_the_sender_imports_no_arroyo():
    tree = ast.parse(sender_block())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"os", "sys", "time", "uuid", "msgpack", "numpy", "zmq"}, imported


def test_the_documented_sender_feeds_a_real_service(service, ipc, tmp_path):
    script = tmp_path / "send_frames.py"
    script.write_text(sender_block())
    address, stats = ipc(), ipc()
    sink = service("publisher", "--in", f"@{address}", "--sink", "stats", "--status", stats,
                   name="sink")
    done = subprocess.run([sys.executable, "-I", str(script), address], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    runs = wait_for(lambda: [r for r in sink_runs(stats) if r["complete"]], what="the run's Stop")
    assert len(runs) == 1
    assert runs[0]["frames"] == 10 and runs[0]["frames_sent"] == 10 and runs[0]["lost"] == 0
    assert runs[0]["bytes"] == 10 * 256 * 256 * 2
    assert status(stats)["input"]["malformed"] == {}
    assert sink.process.poll() is None
