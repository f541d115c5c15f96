"""``arroyo bench`` on real chains of service processes: it finds a rate, its JSON agrees
with what the sink itself logged, and a chain that cannot keep up (a user's operator that
sleeps on every frame) is caught, by frames falling behind (push) or frames dropped
(pub with a drop-newest overflow policy). ``benchmarks/soak.py``, for a few seconds, finds
a plain chain flat and one whose operator keeps every frame growing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLEEPY = '''
import time

from arroyo_core import Event, Operator


class Sleepy(Operator):
    """Takes ``seconds`` over every frame: a chain with it cannot pass 1/seconds frames/s."""

    def __init__(self, seconds: float = 0.02):
        super().__init__()
        self.seconds = seconds

    def on_event(self, event: Event):
        time.sleep(self.seconds)
        return event
'''
LEAKY = '''
import numpy as np

from arroyo_core import Event, Operator


class Leaky(Operator):
    """Keeps 200 kB for every frame it sees, as a leak would."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def on_event(self, event: Event):
        self.kept.append(np.ones(200_000, np.uint8))
        return event
'''
ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"\[sink\] .*run summary: (?:\(.*\) )?(\d+) frames, .*lost (\d+)")
LEDGER = re.compile(r"\[source\] .* stopped; ledger: (.*)$", re.M)


def bench(*args: str, cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services", "bench", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_of_a_tiny_chain_finds_a_rate_and_its_json_agrees_with_the_sink(tmp_path):
    done = bench("--shape", "32,32", "--seconds", "0.6", "--precision", "0.5", "--repeats", "1",
                 "--start-rate", "100", "--max-rate", "400", "--json", "bench.json",
                 "--verbose", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    steps = report["steps"]
    assert report["sustained"]["rate"] == max(s["target"] for s in steps if s["passed"])
    assert report["frame"] == {"shape": [32, 32], "dtype": "uint16", "bytes": 2048}
    assert report["services"] == ["source", "operator", "sink"]

    # What the sink logged at each run's end, and what each source logged as it exited:
    # the same frames, step by step, as the JSON says.
    summaries = [(int(n), int(lost)) for n, lost in SUMMARY.findall(done.stdout)]
    sources = [json.loads(text) for text in LEDGER.findall(done.stdout)]
    assert len(summaries) == len(sources) == len(steps)
    for step, (counted, lost), ledger in zip(steps, summaries, sources, strict=True):
        assert step["counted"] == counted and step["lost"] == lost
        assert step["sent"] == ledger["outputs"][0]["sent"] - 2  # less its Start and Stop
        if step["passed"]:
            assert step["sent"] == step["arrived"] == counted == step["frames"]
            assert lost == 0 and step["achieved"] >= 0.95 * step["target"]
            assert step["gb_per_s"] == pytest.approx(step["achieved"] * 2048 / 1e9, rel=0.01)
        assert set(step["cpu"]) == {"source", "operator", "sink"}
        # (CPU time comes in 10 ms ticks: a service that used less in a 0.6 s step reads 0)
        assert all(0 <= cpu < 250 for cpu in step["cpu"].values())
    assert any(cpu > 0 for step in steps for cpu in step["cpu"].values())
    # the table, a row per step, and the verdict
    assert re.search(r"^\s+STEP\s+TARGET/s\s+ACHIEVED/s\s+GB/s\s+LOST", done.stdout, re.M)
    assert len(re.findall(r"^\s+\d+\s+[\d,.]+\s+[\d,.]+\s+", done.stdout, re.M)) == len(steps)
    assert f"sustained: {report['sustained']['rate']:,.6g} frames/s" in done.stdout


def user_chain(directory: Path, pattern: str, module: str = SLEEPY,
               operator: str = "slow_ops:Sleepy", options: str = "{ seconds = 0.02 }") -> Path:
    """A chain file whose operator is a user's ``module`` beside it (by default one that
    takes 20 ms a frame)."""
    if module:
        (directory / f"{operator.partition(':')[0]}.py").write_text(module)
    hop1, hop2 = free_port(), free_port()
    receive = {"push": "pull", "pub": "sub"}[pattern]
    # on pub, small buffers and drop-newest: a source too fast for the chain drops frames
    # (one message a frame: in batches, 8 messages would hold a whole 1 s step's excess)
    out_options = ('{ hwm = 8, overflow = "drop-newest", batch = 0 }' if pattern == "pub"
                   else "{}")
    # and frames big enough (128 KiB) that the kernels' socket buffers hold only a few, and
    # an operator that queues two: a step at twice its rate overflows within a second
    shape = "[256, 256]" if pattern == "pub" else "[16, 16]"
    operator_buffers = "queue_size = 2\nin_options = { hwm = 2 }" if pattern == "pub" else ""
    path = directory / "slow.toml"
    path.write_text(f"""
name = "slow"
[services.source]
role = "listener"
source = "simulated"
options = {{ shape = {shape} }}
out = "@tcp://127.0.0.1:{hop1}"
out_pattern = "{pattern}"
out_options = {out_options}
[services.operator]
role = "operator"
operator = "{operator}"
options = {options}
{operator_buffers}
in = ">tcp://{{source}}:{hop1}"
in_pattern = "{receive}"
out = "@tcp://127.0.0.1:{hop2}"
[services.sink]
role = "publisher"
sink = "stats"
in = ">tcp://{{operator}}:{hop2}"
""")
    return path


@pytest.mark.parametrize(("pattern", "sign"), [("push", "fell behind"), ("pub", "dropped")])
def test_bench_finds_a_rate_below_what_a_slow_operator_can_do(tmp_path, pattern, sign):
    chain = user_chain(tmp_path, pattern)
    start = "100" if pattern == "pub" else "15"  # pub: a first step at twice the limit
    tolerance = 0.05
    done = bench(str(chain), "--start-rate", start, "--seconds", "1", "--precision", "0.25",
                 "--tolerance", str(tolerance), "--repeats", "1", "--json", "bench.json",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    limit = 1 / 0.02  # frames/s the operator can do at most
    # a step passes when frames arrive at (1 - tolerance) of its target, so a chain that
    # does ``limit`` can pass a target up to limit / (1 - tolerance): the search's steps
    # from 15 (30, 60, then 45 and 52.5) put 52.5 on that edge, and it goes either way
    assert report["sustained"]["rate"] <= limit / (1 - tolerance)
    # achieved is a slope through a 1 s step's few polled samples of the sink: some noise
    assert report["sustained"]["achieved"] <= limit * 1.15
    assert report["lowest_failed"]["rate"] <= 2 * limit
    failed = [step for step in report["steps"] if not step["passed"]]
    assert failed and all(step["target"] > report["sustained"]["rate"] for step in failed)
    assert any(sign in step["why"] for step in failed), failed
    if pattern == "pub":  # the loss is in the ledger: frames the chain did not deliver
        assert any(step["dropped"] + step["lost"] > 0 for step in failed)
        assert all(step["arrived"] < step["frames"] for step in failed
                   if "dropped" in step["why"])
    assert report["services"] == ["source", "operator", "sink"]


def test_bench_refuses_a_chain_whose_source_it_cannot_drive(tmp_path):
    chain = tmp_path / "outside.toml"
    chain.write_text("""
[services.entry]
role = "listener"
source = "zmq"
options = { address = ">tcp://127.0.0.1:5999" }
out = "@tcp://127.0.0.1:5998"
[services.sink]
role = "publisher"
in = ">tcp://{entry}:5998"
""")
    done = bench(str(chain), cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert 'source = "simulated"' in done.stderr and "entry" in done.stderr


@pytest.mark.parametrize(("module", "operator", "flat"), [
    ("", "passthrough", True), (LEAKY, "leaky_ops:Leaky", False)])
def test_soak_reports_memory_and_open_files_of_every_service(tmp_path, module, operator, flat):
    chain = user_chain(tmp_path, "push", module, operator, "{}")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), str(chain),
                           "--minutes", "0.1", "--rate", "40", "--json", "soak.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == (0 if flat else 1), done.stdout + done.stderr
    report = json.loads((tmp_path / "soak.json").read_text())
    assert set(report["services"]) == {"source", "operator", "sink"}
    assert report["passed"] and report["flat"] is flat
    step = report["step"]
    assert step["sent"] == step["arrived"] == step["frames"] == 240 and step["lost"] == 0
    for name, figures in report["services"].items():
        assert figures["rss_start"] > 10e6 and figures["fds_start"] > 3
        first, second = figures["rss_peaks"]
        assert figures["rss_growth"] == pytest.approx(second / first - 1)
        if name == "operator" and not flat:  # 200 kB a frame: ~60 frames between the peaks
            assert second > first * 1.05 and second - first > 4e6
        else:
            assert abs(second / first - 1) <= 0.05
    assert ("memory and open files flat" if flat else "NOT flat") in done.stdout


def test_arroyo_service_sets_plugin_options_and_status_over_the_chain_file(tmp_path):
    chain = user_chain(tmp_path, "push")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services", "service", str(chain), "source",
                               *args, "--check"], capture_output=True, text=True, timeout=30)

    assert check("-o", "rate=7", "-o", "frames=3", "--status", "ipc://status").returncode == 0
    refused = check("-o", "rate=fast")
    assert refused.returncode == 2 and "option rate: expected a number" in refused.stderr
    refused = check("--status", "redis://127.0.0.1")
    assert refused.returncode == 2 and "status" in refused.stderr
