"""Runs or checks the services of a chain on this machine, each as a child process
``arroyo service CHAIN_FILE NAME``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import click

from .chain import Chain, service_command
from .deploy import stop_wait
from .processes import ServiceProcess

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each stops the whole chain


def run_chain(chain: Chain, ready_timeout: float = 30.0) -> int:
    """Start ``chain``'s services (downstream first), echo their logs, and on SIGINT or
    SIGTERM stop them all; also stop them all when one fails. Return 0 if all ended 0.

    The children run in their own sessions, so a terminal's Ctrl-C reaches only this
    process, which then sends every service SIGTERM at once: the source ends its run, the
    services after it pass the Stop on before they stop, so nothing in flight is lost.
    SIGHUP (a closed terminal) stops the chain the same way. Should this process be
    killed outright (SIGKILL), the kernel sends each service SIGHUP (Linux's parent-death
    signal), on which it stops as on SIGTERM, so no service outlives the ``arroyo run``
    that started it.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(f"arroyo run: {signal.Signals(signum).name}: stopping the chain", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    started: dict[str, ServiceProcess] = {}
    failed: list[str] = []
    try:
        for name, process_name, replica in reversed(processes(chain)):
            started[process_name] = ServiceProcess.from_argv(
                service_command(chain.origin, name, replica=replica), process_name,
                echo=True, own_session=True, die_with_parent=True)
        for name, process in started.items():
            try:
                process.wait_ready(ready_timeout)
            except RuntimeError:
                failed.append(name)
        if not failed:
            click.echo(f"READY chain {chain.name}: " + ", ".join(
                f"{name} pid {started[name].process.pid}" for _, name, _ in processes(chain)),
                err=True)
        while not failed and not stop.wait(0.2):
            polled = {name: p.process.poll() for name, p in started.items()}
            failed = [name for name, code in polled.items() if code not in (None, 0)]
            if all(code is not None for code in polled.values()):
                break
    finally:
        if failed:
            click.echo(f"arroyo run: {', '.join(failed)} failed; stopping the chain", err=True)
        codes = _stop_all(chain, started)
        codes = {name: codes[name] for _, name, _ in processes(chain) if name in codes}
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("arroyo run: exit codes " + ", ".join(f"{n} {c}" for n, c in codes.items()),
               err=True)
    return 0 if all(code == 0 for code in codes.values()) else 1


def processes(chain: Chain) -> list[tuple[str, str, int | None]]:
    """(service, process name, replica) of each process of ``chain``, upstream first: one
    per service, or ``NAME-K`` for each worker K of a service with replicas > 1."""
    found: list[tuple[str, str, int | None]] = []
    for name in chain.order():
        count = chain.services[name].replicas
        found += ([(name, f"{name}-{k}", k) for k in range(count)] if count > 1
                  else [(name, name, None)])
    return found


def _stop_all(chain: Chain, started: dict[str, ServiceProcess]) -> dict[str, int]:
    for process in started.values():
        process.signal(signal.SIGTERM)
    service_of = {process_name: name for name, process_name, _ in processes(chain)}
    codes = {}
    for name, process in started.items():
        try:
            codes[name] = process.process.wait(stop_wait(chain, service_of[name]))
        except subprocess.TimeoutExpired:
            click.echo(f"arroyo run: {name} did not stop in time; killing it", err=True)
            process.process.kill()
            codes[name] = process.process.wait()
        said = process.output()  # (also lets the reader thread echo the last lines)
        if codes[name] == -signal.SIGTERM and f"EXIT {name} 0" in said.splitlines():
            # It had ended by itself (its run was over) and our SIGTERM reached only its
            # interpreter's exit, where Python no longer handles signals: a clean end.
            codes[name] = 0
    return codes


def check_chain(chain: Chain, timeout: float = 60.0) -> int:
    """Run every service's ``--check`` (in parallel, ``arroyo service CHAIN NAME --check``:
    the command that runs it) and check the links; print what is wrong. Return 0 if all is
    well, else 2."""
    problems = chain.problems()
    for problem in problems:
        click.echo(f"link: {problem}")
    if not problems:
        click.echo(f"links ok: {len(chain.links())} connection(s) inside chain {chain.name}")
    checks = {name: subprocess.Popen(
        [sys.executable, "-P", "-m", "services", *service_command(chain.origin, name), "--check",
         "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in chain.services}
    deadline = time.monotonic() + timeout
    bad = 0
    for name, check in checks.items():
        try:
            output, _ = check.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            check.kill()
            output, _ = check.communicate()
        if check.returncode:
            bad += 1
            click.echo(f"service {name}: check failed (exit {check.returncode}):")
            click.echo("  " + output.strip().replace("\n", "\n  "))
        else:
            click.echo(f"service {name}: {output.strip().splitlines()[-1]}")
    return 2 if problems or bad else 0
