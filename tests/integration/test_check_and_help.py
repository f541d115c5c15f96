"""What a new user trips on, with real `arroyo` processes:

- every configuration error, with --check and at a real start, exits 2 with one line on
  stderr naming the key and what was expected (and says it once: not in the log as well);
- `arroyo status` and `arroyo deploy` refuse what they cannot use in one line;
- user code and relative paths are found next to the config or chain file, the same for
  `arroyo operator -c`, `arroyo check`, `arroyo run` and supervisord, from any directory;
- `--help` lists the options of the plug-in it is given;
- README's "Write an operator" and "Write a sink" code, as written there, runs as services.
"""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from arroyo_core.address import FORMS
from services.processes import ServiceProcess
from tests.support.addresses import IpcDirectory
from tests.support.chains import chain_toml, write
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_block(first_line: str) -> str:
    """The fenced code block of README.md that starts with ``first_line``."""
    for block in re.findall(r"```\w*\n(.*?)```", README, re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"README.md has no code block starting {first_line!r}")


def arroyo(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``arroyo ARGS`` as a child process (not importing from its working directory, as
    the `arroyo` script does not)."""
    return subprocess.run([sys.executable, "-P", "-m", "services", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, and ``message`` once, as the one line on stderr, and nowhere else."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"error: {message}\n", result.stderr
    assert message not in result.stdout and "Traceback" not in result.stdout, result.stdout


FILES = {
    "my_ops.py": readme_block("# my_ops.py"),
    "bad_ops.py": "def broken(:\n    pass\n",
    "queue.toml": 'in = ">tcp://127.0.0.1:{a}"\nout = "@tcp://127.0.0.1:{b}"\nqueue_size = "big"\n',
    "source.toml": 'source = "simulated"\nout = 5555\n',
    "bad.yaml": 'in: [">tcp://127.0.0.1:{a}"\nout: "@tcp://127.0.0.1:{b}"\n',
    "bad.toml": 'in = [">tcp://127.0.0.1:{a}"\n',
    "list.yaml": '- in: ">tcp://127.0.0.1:{a}"\n- out: "@tcp://127.0.0.1:{b}"\n',
}
OPERATOR = ("operator", "--in", ">tcp://127.0.0.1:{a}", "--out", "@tcp://127.0.0.1:{b}")
LISTENER = ("listener", "--source", "simulated", "--out", "@tcp://127.0.0.1:{b}")
CASES = {
    "hwm=lots": ((*LISTENER, "--out-option", "hwm=lots"),
                 "[listener] out: option hwm: expected an integer, got 'lots'"),
    "queue_size=big": (("operator", "-c", "queue.toml"),
                       "[operator] queue_size: expected an integer, got 'big'"),
    "out=5555 in a file": (("listener", "-c", "source.toml"), "[listener] out: expected an "
                           f"address or a list of addresses such as {FORMS}, got 5555"),
    "--out 5555": (("listener", "--source", "simulated", "--out", "5555"),
                   "[listener] out: '5555' is not a valid address: expected [@|>]scheme://..., "
                   f"e.g. {FORMS}"),
    "port 99999": (("listener", "--source", "simulated", "--out", "@tcp://*:99999"),
                   "[listener] out: 'tcp://*:99999' is not a valid address: Port out of range "
                   "0-65535"),
    "an operator as the sink": (
        ("publisher", "--in", ">tcp://127.0.0.1:{a}", "--sink", "my_ops:Centroid"),
        "[publisher] my_ops:Centroid: an operator (an Operator) given as a sink; a sink is a "
        "subclass of arroyo_core.Publisher"),
    "a SyntaxError in user code": (
        (*OPERATOR, "--operator", "bad_ops:Centroid"),
        "[operator] operator 'bad_ops:Centroid' cannot be imported: invalid syntax "
        "({dir}/bad_ops.py, line 1)"),
    "a YAML syntax error": (("operator", "-c", "bad.yaml"), "bad.yaml: expected ',' or ']', "
                            "but got '<scalar>' (at line 2, column 1)"),
    "a TOML syntax error": (("operator", "-c", "bad.toml"), "bad.toml: Unclosed array (at end "
                            "of document)"),
    "a YAML list": (("operator", "-c", "list.yaml"), "list.yaml: expected a table of settings "
                    "(key: value lines), got a list"),
    "factor=abc": ((*OPERATOR, "--operator", "downsample", "-o", "factor=abc"),
                   "[operator] downsample: option factor: expected an integer, got 'abc'"),
    "a misspelt option": ((*OPERATOR, "--operator", "downsample", "-o", "factr=4"),
                          "[operator] downsample: unknown option 'factr'; did you mean "
                          "'factor'? (valid: factor, method)"),
    "frames=ten": ((*LISTENER, "-o", "frames=ten"),
                   "[listener] simulated: option frames: expected an integer, got 'ten'"),
    "rate=-5": ((*LISTENER, "-o", "rate=-5"), "[listener] simulated: option rate: expected "
                "frames per second, 0 (as fast as the chain takes them) or more, got -5"),
    "a status socket on redis": ((*LISTENER, "--status", "redis://127.0.0.1:6379/0"),
                                 "[listener] status: 'redis://127.0.0.1:6379/0': a status "
                                 "socket is ZeroMQ, on a tcp:// or ipc:// address"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The files the cases name. Every case is refused before a socket opens, so the port
    connected to is any; one bound would be the system's pick."""
    directory = tmp_path_factory.mktemp("user")
    ports = {"a": 5555, "b": "*"}
    for name, text in FILES.items():
        (directory / name).write_text(text.format(**ports) if "{" in text and
                                      name != "my_ops.py" else text)
    directory.joinpath("ports").write_text(f"{ports['a']} {ports['b']}")
    return directory


@pytest.mark.parametrize("mode", ["--check", "start"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_configuration_error_is_one_line_and_exit_2_at_check_and_at_start(workdir, case, mode):
    args, message = CASES[case]
    a, b = workdir.joinpath("ports").read_text().split()
    args = tuple(arg.format(a=a, b=b) for arg in args)
    result = arroyo(*args, *(["--check"] if mode == "--check" else []), cwd=workdir)
    assert_refused(result, message.format(dir=workdir))


def test_status_refuses_what_is_no_status_address_and_reads_a_chain_file(tmp_path):
    assert_refused(arroyo("status", "6000"), "'6000' is not a status address: expected a "
                   "service's status address such as tcp://127.0.0.1:6000, or a chain file; did "
                   "you mean tcp://127.0.0.1:6000?")
    chain = tmp_path / "chain.toml"
    chain.write_text('[services.source]\nrole = "listener"\nsource = "simulated"\n'
                     'out = "@tcp://127.0.0.1:*"\n')
    assert_refused(arroyo("status", str(chain)), f"{chain}: no service of chain 'chain' has a "
                   "status socket (status = ADDRESS)")
    with socket.socket() as held:  # a port bound and not listening: nothing can answer there
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        chain.write_text(chain.read_text() + f'status = "tcp://*:{port}"\n')
        result = arroyo("status", "--timeout", "0.2", str(chain))  # unreachable
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert f"no status answer from tcp://127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("target", ["supervisor", "compose"])
def test_deploy_to_a_directory_that_does_not_exist_is_one_line(target):
    result = arroyo("deploy", target, str(ROOT / "deploy/chain.toml"), "-o", "/nonexistent/x.conf")
    assert_refused(result, "-o/--output: cannot write /nonexistent/x.conf: No such file or "
                           "directory")


def test_help_lists_the_options_of_the_plugin_it_is_given(tmp_path):
    result = arroyo("listener", "--source", "simulated", "--help")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Options of source 'simulated' (-o KEY=VALUE):\n")[1]
    section = " ".join(section.split())  # as one line, whatever the terminal's width
    assert "frames=INTEGER How many frames in the run. [default: 100]" in section
    assert "shape=[INTEGER,...] Of each frame, e.g. [512, 512]. [default: [512, 512]]" in section
    assert "(arroyo_core.verify.VerifyingSink)" in section  # reStructuredText made plain
    result = arroyo("operator", "--operator", "downsample", "--help")
    assert re.search(r"method=\[mean\|sum\] +How a block becomes one pixel", result.stdout)
    # a plug-in named in the config file, found next to it (not in the current directory)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "my_ops.py").write_text(readme_block("# my_ops.py"))
    (tmp_path / "conf" / "op.toml").write_text('operator = "my_ops:Centroid"\n')
    result = arroyo("operator", "-c", "conf/op.toml", "--help", cwd=tmp_path)
    assert "Options of operator 'my_ops:Centroid'" in result.stdout, result.stdout
    assert re.search(r"threshold=NUMBER +\[default: 0\.0\]", result.stdout)
    result = arroyo("publisher", "--help")
    assert "Give --sink NAME with --help to list the options (-o KEY=VALUE)" in result.stdout


def test_readme_operator_config_checks_as_written(tmp_path):
    """README: my_ops.py, operator.toml and `arroyo operator -c operator.toml --check`, in one
    directory, with nothing on PYTHONPATH for my_ops."""
    command = "arroyo operator -c operator.toml --check"
    assert f"`{command}`" in README
    (tmp_path / "my_ops.py").write_text(readme_block("# my_ops.py"))
    (tmp_path / "operator.toml").write_text(readme_block("# operator.toml"))
    result = arroyo(*command.split()[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config ok: centroid (operator)\n"
    # from elsewhere, the file's directory is where my_ops is found
    result = arroyo("operator", "-c", str(tmp_path / "operator.toml"), "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    message = "[centroid] my_ops:Centroid: option threshold: expected a number, got 'high'"
    assert f"`error: {message}`" in " ".join(README.split())  # as README shows it
    assert_refused(arroyo(*command.split()[1:], "-o", "threshold=high", cwd=tmp_path), message)


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open())) if path.exists() else []


def test_readme_sink_runs_as_a_publisher_service(tmp_path, service):
    """README's "Write a sink": its code, as a real publisher service started as README says
    (in the directory of my_sinks.py), fed by a simulated source, writes a row per frame."""
    (tmp_path / "my_sinks.py").write_text(readme_block("# my_sinks.py"))
    command = ("arroyo publisher --in '>tcp://127.0.0.1:5556' --sink my_sinks:CsvSink "
               "-o path=frames.csv")
    assert f"`{command}`" in README
    # the source binds a port of the system's choosing and waits for the sink
    source = service("listener", "--source", "simulated", "-o", "frames=20", "-o", "rate=0",
                     "-o", "shape=[8,8]", "--out", "@tcp://127.0.0.1:*")
    port = source.bound("out").rpartition(":")[2]
    args = [word.strip("'").replace("5556", port) for word in command.split()[2:]]
    sink = ServiceProcess.from_argv(["publisher", "--name", "sink", *args], "sink", cwd=tmp_path)
    try:
        sink.wait_ready()
        rows = wait_for(lambda: len(csv_rows(tmp_path / "frames.csv")) == 20
                        and csv_rows(tmp_path / "frames.csv"), 30, "20 rows")
    finally:
        assert sink.stop() == 0, sink.output()
    assert [int(frame) for _, frame, _ in rows] == list(range(20))
    assert len({run for run, _, _ in rows}) == 1 and all(float(total) > 0 for *_, total in rows)
    result = arroyo("publisher", "--sink", "my_sinks:CsvSink", "--help", cwd=tmp_path)
    assert re.search(r"path=TEXT +The CSV file rows are added to\. \[default: frames\.csv\]",
                     result.stdout), result.stdout
    message = "[publisher] my_sinks:CsvSink: option path: expected a string, got [1]"
    assert f"`error: {message}`" in " ".join(README.split())  # as README shows it
    assert_refused(arroyo("publisher", *args[:-2], "-o", "path=[1]", "--check", cwd=tmp_path),
                   message)


def user_chain(home: Path, ipc: IpcDirectory, frames: int, rate: float) -> Path:
    """A chain in ``home`` whose operator and sink are README's my_ops.py and my_sinks.py,
    next to the chain file; the sink writes the relative path frames.csv."""
    home.mkdir()
    (home / "my_ops.py").write_text(readme_block("# my_ops.py"))
    (home / "my_sinks.py").write_text(readme_block("# my_sinks.py"))
    text, _ = chain_toml(ipc, "user", frames=frames, rate=rate, shape="[16, 16]",
                         operator="my_ops:Centroid", sink="my_sinks:CsvSink",
                         sink_options='path = "frames.csv"')
    return write(home / "chain.toml", text)


def consecutive_rows(path: Path, at_least: int) -> list[list[str]] | None:
    """The rows of frames.csv once there are ``at_least``, if their frames are 0, 1, ..."""
    rows = csv_rows(path)
    if len(rows) < at_least:
        return None
    assert [int(frame) for _, frame, _ in rows] == list(range(len(rows)))
    return rows


def test_user_code_next_to_the_chain_file_passes_check_and_runs_under_arroyo_run(tmp_path, ipc):
    chain = user_chain(tmp_path / "chain", ipc, frames=2000, rate=200)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = arroyo("check", str(chain), cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("source", "operator", "sink"):
        assert f"service {name}: config ok" in result.stdout
    run = ServiceProcess.from_argv(["run", str(chain)], "run", cwd=elsewhere)
    try:
        wait_for(lambda: consecutive_rows(chain.parent / "frames.csv", 20), 30, "rows")
        status = arroyo("status", str(chain), cwd=elsewhere)  # every service, by the chain file
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("source", "operator", "sink"):
            assert re.search(rf"^{name} ", status.stdout, re.M), status.stdout
    finally:
        code = run.stop(30)
    assert code == 0, run.output()
    assert not (elsewhere / "frames.csv").exists()
    assert consecutive_rows(chain.parent / "frames.csv", 20)  # nothing lost at the stop


@pytest.mark.slow
def test_user_code_next_to_the_chain_file_runs_under_supervisord(tmp_path, ipc, supervisor):
    """supervisord started elsewhere (the test's directory) runs the generated programs in
    the chain file's directory: the operator and sink import my_ops and my_sinks there,
    and frames.csv is written there."""
    chain = user_chain(tmp_path / "chain", ipc, frames=5000, rate=200)
    sv = supervisor(chain)
    wait_for(lambda: consecutive_rows(chain.parent / "frames.csv", 20), 40,
             "rows under supervisord")
    for name in ("operator", "sink"):
        log = sv.log(f"user:{name}")
        assert f"READY {name}" in log and "Traceback" not in log and "error: " not in log, log
