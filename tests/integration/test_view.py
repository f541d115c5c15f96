"""The browser live view (`--sink view`) on a live chain, in a real headless Chromium
driven over WebDriver: the page shows a frame and a plot, a screenshot is not blank, the
frame number advances, the log scale is asked for, and a browser that stops altogether
(SIGSTOP) neither slows nor breaks the chain. And `arroyo view ADDRESS` joining a running
PUB link as a keep-latest subscriber (no browser: that one runs wherever the chain can)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import signal
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from arroyo_core.status import ServiceStatus
from services.processes import ServiceProcess, free_port
from services.status_server import query_status
from tests.support.addresses import IpcDirectory
from tests.support.chains import write
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

PROFILE_OPERATOR = '''
import numpy as np
from arroyo_core import Event, Operator

class Profile(Operator):
    """Adds each frame's column sums: a 1-D array for the view to plot."""

    def on_event(self, event):
        image = event.payload["image"]
        return Event(event.meta, {"image": image,
                                  "profile": image.sum(axis=0, dtype=np.float64)})
'''


def chain_file(directory: Path, ipc: IpcDirectory) -> Path:
    """source -> Profile -(pub)-> a stats sink and the view, each a subscriber; the view's
    queue keeps only the latest event, as docs/reliability.md says a viewer's should."""
    write(directory / "view_ops.py", PROFILE_OPERATOR)
    hop1, hop2 = free_port(), free_port()
    return write(directory / "chain.toml", textwrap.dedent(f"""
        name = "viewtest"
        [services.source]
        role = "listener"
        source = "simulated"
        options = {{ shape = [128, 128], frames = 100000, rate = 40 }}
        out = "@tcp://127.0.0.1:{hop1}"
        drain_timeout = 1.0
        [services.operator]
        role = "operator"
        operator = "view_ops:Profile"
        in = ">tcp://{{source}}:{hop1}"
        out = "@tcp://127.0.0.1:{hop2}"
        out_pattern = "pub"
        out_options = {{ subscribers = 2 }}
        status = "{ipc('operator')}"
        drain_timeout = 1.0
        [services.sink]
        role = "publisher"
        sink = "stats"
        options = {{ interval = 0 }}
        in = ">tcp://{{operator}}:{hop2}"
        in_pattern = "sub"
        status = "{ipc('sink')}"
        drain_timeout = 1.0
        [services.view]
        role = "publisher"
        sink = "view"
        options = {{ port = 0 }}
        in = ">tcp://{{operator}}:{hop2}"
        in_pattern = "sub"
        queue_policy = "keep-latest"
        status = "{ipc('view')}"
        drain_timeout = 1.0
        """))


def status(ipc: IpcDirectory, name: str) -> ServiceStatus:
    return ServiceStatus.from_dict(query_status(ipc(name), timeout=5))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Iterator[tuple[IpcDirectory, str]]:
    """The chain running (`arroyo run`), and the view's URL from its status record."""
    for module in ("aiohttp", "matplotlib", "PIL"):
        skip_unless(importlib.util.find_spec(module) is not None,
                    f"{module} is not installed: pip install -e '.[dev]'")
    ipc = IpcDirectory()
    run = ServiceProcess.from_argv(["run", str(chain_file(tmp_path_factory.mktemp("view"),
                                                          ipc))], "chain",
                                   die_with_parent=True)
    try:
        run.wait_ready(30)
        url = wait_for(lambda: status(ipc, "view").outputs[0].transport.get("url"),
                       what="the view's URL in its status")
        yield ipc, url
    finally:
        run.stop(20)
        ipc.remove()


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    """Headless Chromium (Debian's), driven by its chromedriver through selenium."""
    skip_unless(shutil.which("chromium") is not None and shutil.which("chromedriver")
                is not None, "chromium and chromium-driver (Debian packages) are not installed")
    skip_unless(importlib.util.find_spec("selenium") is not None,
                "selenium is not installed: pip install -e '.[dev]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=900,900",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def picture(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colours(image: np.ndarray) -> int:
    rgb = image.astype(np.uint32)
    return len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))


def shown_frame(driver: Any) -> int | None:
    text = driver.execute_script("return document.getElementById('frame').textContent")
    return int(text) if text.isdigit() else None


def image_loaded(driver: Any) -> str | None:
    """The version of the frame the page's image shows, once it has loaded one."""
    return driver.execute_script("return document.getElementById('image').dataset.version")


def test_the_page_shows_the_latest_frame_live(chain, browser):
    from selenium.webdriver.common.by import By

    ipc, url = chain
    browser.get(url)
    wait_for(lambda: image_loaded(browser), what="a frame on the page")
    assert browser.find_element(By.ID, "status").text == "live"
    image = picture(browser.find_element(By.ID, "image").screenshot_as_png)
    assert image.shape[0] >= 256 and image.shape[1] >= 256  # drawn 512 px wide
    assert colours(image) > 20 and image.std() > 10, "the frame on screen is blank"
    page = picture(browser.get_screenshot_as_png())
    assert colours(page) > 20

    plot = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                  '.plot[data-name="profile"] canvas'),
                    what="the profile plotted")[0]
    assert colours(picture(plot.screenshot_as_png)) > 2  # a line on the background
    assert "128 points" in browser.find_element(By.CSS_SELECTOR, ".plot span").text

    first = wait_for(lambda: shown_frame(browser), what="a frame number")
    wait_for(lambda: (shown_frame(browser) or 0) > first + 5, what="the frame number going up")
    first_version = int(image_loaded(browser))
    wait_for(lambda: int(image_loaded(browser) or 0) > first_version,
             what="a newer image loaded")
    assert float(browser.find_element(By.ID, "rate").text) > 0

    browser.find_element(By.ID, "log").click()
    wait_for(lambda: "log=1" in browser.find_element(By.ID, "image").get_attribute("src")
             and image_loaded(browser), what="the image in log scale")
    assert colours(picture(browser.find_element(By.ID, "image").screenshot_as_png)) > 20
    view = status(ipc, "view").outputs[0]
    assert view.transport["clients"] == 1 and view.transport["images"] > 2


def test_a_stopped_browser_neither_slows_nor_breaks_the_chain(chain, browser):
    ipc, url = chain
    browser.get(url)
    wait_for(lambda: image_loaded(browser), what="a frame on the page")
    chromium = [process for process in psutil.Process(browser.service.process.pid)
                .children(recursive=True)]
    before = status(ipc, "view").outputs[0].sent or 0
    sink_before = _taken(status(ipc, "sink"))
    _signal(chromium, signal.SIGSTOP)
    try:
        # 40 frames/s: 60 more taken by the view and by the sink in a few seconds,
        # while the browser takes nothing at all
        wait_for(lambda: (status(ipc, "view").outputs[0].sent or 0) > before + 60,
                 what="the view taking frames while its browser is stopped")
        wait_for(lambda: _taken(status(ipc, "sink")) > sink_before + 60,
                 what="the chain's sink going on while the browser is stopped")
    finally:
        _signal(chromium, signal.SIGCONT)
    sink = status(ipc, "sink")
    assert sum(run.lost for run in sink.outputs[0].runs or []) == 0
    assert sink.input is not None and sink.input.missing == 0
    operator = status(ipc, "operator")
    assert not operator.outputs[0].dropped  # the PUB link dropped nothing for anyone
    version = int(image_loaded(browser) or 0)
    wait_for(lambda: int(image_loaded(browser) or 0) > version,
             what="the page live again after the browser resumed")


def _signal(processes: list[psutil.Process], signum: int) -> None:
    """Chromium starts and ends short-lived helpers of its own; one gone is not stopped."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def _taken(sink: ServiceStatus) -> int:
    return sum(run.frames for run in sink.outputs[0].runs or [])


def test_arroyo_view_subscribes_and_keeps_the_latest(chain, tmp_path):
    """`arroyo view ADDRESS` joins a running PUB link as one more subscriber, its queue
    keeping only the newest event, and serves the state it shows (no browser here)."""
    ipc, _ = chain
    link = status(ipc, "operator").outputs[0].bound
    view = ServiceProcess.from_argv(["view", f">{link}", "--port", "0", "--status",
                                     ipc("view2")], "view2", die_with_parent=True)
    try:
        view.wait_ready()
        record = wait_for(lambda: (r := status(ipc, "view2")).outputs[0].sent and r,
                          what="arroyo view taking frames")
        assert record.queue is not None and record.queue.policy == "keep-latest"
        assert record.input is not None and record.input.pattern == "sub"
        url = record.outputs[0].transport["url"]
        first = json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
        assert first["image"]["shape"] == [128, 128] and len(first["plots"]["profile"]) == 128
        wait_for(lambda: json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
                 ["frame"] > first["frame"], what="the frame number going up")
        assert urllib.request.urlopen(url + "frame.png?cmap=gray&log=1",
                                      timeout=5).read()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        assert view.stop(10) == 0
