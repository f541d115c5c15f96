"""`arroyo monitor` in a real terminal (tmux) against a live chain of service processes,
its screen read back with ``tmux capture-pane``: a stage not up yet shows as such and then
appears, frames count up, a killed and restarted stage is picked up again, and ``q`` quits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.chain import service_command
from services.processes import ServiceProcess
from tests.support.addresses import IpcDirectory
from tests.support.chains import chain_toml, write
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLUMNS = ("SERVICE", "STATE", "RUN", "FRAME", "RECEIVED", "SENT", "MSG/S", "MB/S", "QUEUE",
           "LAG S", "LOST", "DROPPED", "ERRORS", "RESTARTS")


class Tmux:
    """A tmux server of its own (its socket in ``directory``) running one command in a
    150x20 window whose pane stays after the command exits, so what it left is read."""

    def __init__(self, directory: Path, command: list[str], cwd: Path) -> None:
        self.base = ["tmux", "-S", str(directory / "tmux.sock")]
        # the terminal's size is the window's: not COLUMNS or LINES that pytest's has
        env = {key: value for key, value in os.environ.items()
               if key not in ("COLUMNS", "LINES", "TMUX")}
        subprocess.run([*self.base, "-f", "/dev/null", "start-server", ";", "set-option", "-g",
                        "remain-on-exit", "on", ";", "new-session", "-d", "-x", "150", "-y",
                        "20", "-c", str(cwd), *command], check=True, env=env)

    def screen(self, history: bool = False) -> str:
        """The visible screen, or with ``history`` every line that scrolled off it too."""
        return subprocess.run([*self.base, "capture-pane", "-p", *(["-S", "-"] if history
                                                                   else [])],
                              capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", *keys], check=True)

    def pane(self, what: str) -> str:
        return subprocess.run([*self.base, "display-message", "-p", f"#{{{what}}}"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def rows(screen: str) -> dict[str, dict[str, str]]:
    """The monitor's table read from the screen: service -> column -> cell, cut at the
    header's column starts (rich aligns cells left, under their header)."""
    lines = screen.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("SERVICE ")), None)
    if header is None:
        return {}
    starts = [lines[header].index(name) for name in COLUMNS]
    found = {}
    for line in lines[header + 1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        found[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return found


def wait_screen(tmux: Tmux, condition, what: str, timeout: float = 20.0):
    """Wait for ``condition(rows)`` to hold on the screen; fail showing the last screen."""
    last = [""]

    def check():
        last[0] = tmux.screen()
        try:
            return condition(rows(last[0]))
        except KeyError:
            return None

    try:
        return wait_for(check, timeout=timeout, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen:\n{last[0]}") from None


def _count(cell: str) -> int:
    return int(cell.replace(",", "")) if cell not in ("", "-") else -1


@pytest.fixture
def chain(tmp_path) -> Iterator[Path]:
    skip_unless(shutil.which("tmux") is not None, "tmux is not installed")
    ipc = IpcDirectory()
    text, _ = chain_toml(ipc, name="mon", frames=100_000, rate=50, shape="[16, 16]",
                         drain_timeout=1.0)
    yield write(tmp_path / "chain.toml", text)
    ipc.remove()


def test_monitor_follows_a_live_chain(chain, tmp_path):
    services: list[ServiceProcess] = []

    def start(name: str) -> ServiceProcess:
        services.append(ServiceProcess.from_argv(service_command(chain, name), name,
                                                 die_with_parent=True))
        services[-1].wait_ready()
        return services[-1]

    monitor = [sys.executable, "-m", "services", "monitor", str(chain), "--interval", "0.5",
               "--timeout", "1"]
    tmux = Tmux(tmp_path, ["sh", "-c", '"$@"; echo "monitor exited $?"', "sh", *monitor],
                cwd=tmp_path)
    try:
        start("source")
        operator = start("operator")
        shown = wait_screen(tmux, lambda r: r["operator"]["STATE"] == "up" and r,
                            "the operator up on the monitor's screen")
        assert shown["sink"]["STATE"] == "not up yet", shown
        assert shown["source"]["STATE"] == "up"

        start("sink")
        first = wait_screen(tmux, lambda r: _count(r["sink"]["SENT"]) > 0 and r["sink"],
                            "the sink's frames shown")
        assert first["STATE"] in ("up", "restarted")
        later = wait_screen(tmux, lambda r: _count(r["sink"]["SENT"]) > _count(first["SENT"])
                            and r["sink"], "the sink's frames counting up")
        assert later["RUN"] == first["RUN"] != "-"
        wait_screen(tmux, lambda r: r["sink"]["MSG/S"] not in ("-", "0.0"), "the sink's rate")

        operator.signal(signal.SIGKILL)
        operator.process.wait(10)
        wait_screen(tmux, lambda r: r["operator"]["STATE"].startswith("no answer"),
                    "the killed operator shown as not answering")
        start("operator")
        back = wait_screen(tmux, lambda r: r["operator"]["RESTARTS"] == "1" and r["operator"],
                           "the restarted operator picked up again")
        assert back["STATE"] in ("up", "restarted")
        counted = _count(rows(tmux.screen())["sink"]["SENT"])
        wait_screen(tmux, lambda r: _count(r["sink"]["SENT"]) > counted,
                    "frames through the restarted operator")

        tmux.keys("q")
        wait_for(lambda: tmux.pane("pane_dead") == "1", timeout=10, what="q to quit")
        assert "monitor exited 0" in tmux.screen(history=True)
    finally:
        tmux.kill()
        for service in services:
            service.stop(5)
