"""``arroyo run|validate|list-blocks PIPELINE.yaml`` for arroyopy's ``blocks:`` files
(:mod:`services.blocks`): each block runs as one process, ``arroyo block FILE NAME``, an
Arroyo service with its queue, ledger and error counting."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import Any

import click

from arroyo_core.errors import ConfigError

from .blocks import Block, build_runtime, check_block, load_blocks
from .processes import ServiceProcess
from .serve import EXIT_MARGIN_S, refuse, serve_runtime, setup_logging
from .workdir import at_home, home_of

EXIT_CONFIG = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _load(path: str, names: tuple[str, ...] = ()) -> list[Block]:
    try:
        blocks = load_blocks(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    unknown = sorted(set(names) - {block.name for block in blocks})
    if unknown:
        click.echo(f"error: {path} has no block named {unknown[0]!r}", err=True)
        sys.exit(EXIT_CONFIG)
    return [block for block in blocks if not names or block.name in names]


def _check(path: str, blocks: list[Block]) -> None:
    with at_home(home_of(path)):
        for item in blocks:
            try:
                check_block(item)
            except ConfigError as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(EXIT_CONFIG)


def run_blocks(path: str, names: tuple[str, ...] = (), ready_timeout: float = 30.0) -> int:
    """Run the blocks of ``path`` (those in ``names``, or all), each a child process, until
    they all end, one fails, or a signal stops them all; return 0 if all ended 0."""
    blocks = _load(path, names)
    _check(path, blocks)  # a wrong class or argument stops the run before any block starts
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(f"arroyo run: {signal.Signals(signum).name}: stopping the blocks", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    started: dict[str, ServiceProcess] = {}
    failed: list[str] = []
    try:
        for block in blocks:
            started[block.name] = ServiceProcess.from_argv(
                ["block", path, block.name], block.name, echo=True, own_session=True,
                die_with_parent=True)
        for name, process in started.items():
            try:
                process.wait_ready(ready_timeout)
            except RuntimeError:
                failed.append(name)
        if not failed:
            click.echo(f"READY blocks {path}: " + ", ".join(
                f"{name} pid {p.process.pid}" for name, p in started.items()), err=True)
        while not failed and not stop.wait(0.2):
            polled = {name: p.process.poll() for name, p in started.items()}
            failed = [name for name, code in polled.items() if code not in (None, 0)]
            if all(code is not None for code in polled.values()):
                break
    finally:
        if failed:
            click.echo(f"arroyo run: {', '.join(failed)} failed; stopping the blocks", err=True)
        codes = _stop_all(blocks, started)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("arroyo run: exit codes " + ", ".join(f"{n} {c}" for n, c in codes.items()),
               err=True)
    return 0 if all(code == 0 for code in codes.values()) else 1


def _stop_all(blocks: list[Block], started: dict[str, ServiceProcess]) -> dict[str, int]:
    for process in started.values():
        process.signal(signal.SIGTERM)
    waits = {block.name: block.drain_timeout + 2 * EXIT_MARGIN_S for block in blocks}
    codes = {}
    for name, process in started.items():
        try:
            codes[name] = process.process.wait(waits[name])
        except subprocess.TimeoutExpired:
            click.echo(f"arroyo run: {name} did not stop in time; killing it", err=True)
            process.process.kill()
            codes[name] = process.process.wait()
        if codes[name] == -signal.SIGTERM and f"EXIT {name} 0" in process.output().splitlines():
            codes[name] = 0  # it had ended by itself; the signal reached only its exit
    return codes


@click.command("block", hidden=True)
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def block(pipeline_file: str, name: str, log_level: str) -> None:
    """Run block NAME of PIPELINE_FILE in the foreground (what `arroyo run` starts)."""
    setup_logging(log_level, name)
    (found,) = _load(pipeline_file, (name,))
    with at_home(home_of(pipeline_file)):
        try:
            runtime = build_runtime(found)
        except ConfigError as exc:
            sys.exit(refuse(exc))
        sys.exit(serve_runtime(name, runtime, found.status))


@click.command("validate")
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
def validate(pipeline_file: str) -> None:
    """Check an arroyopy pipeline file (blocks:): every key known, every class imports and
    takes the args and kwargs given. Nothing is constructed, so nothing binds a socket."""
    sys.exit(validate_blocks(pipeline_file))


def validate_blocks(path: str, names: tuple[str, ...] = ()) -> int:
    """What `arroyo validate` does (exits 2 on an error); 0 once all is well."""
    blocks = _load(path, names)
    _check(path, blocks)
    click.echo(f"Found {len(blocks)} block(s):")
    for item in blocks:
        click.echo(f"  - {item.name}\n    Operator: {item.operator.spec}")
        for key in ("listeners", "publishers"):
            parts = getattr(item, key)
            click.echo(f"    {key.capitalize()}: {len(parts)}")
            for part in parts:
                click.echo(f"      - {part.spec}")
    click.echo("Configuration is valid")
    return 0


@click.command("list-blocks")
@click.argument("pipeline_file", type=click.Path(exists=True, dir_okay=False))
def list_blocks(pipeline_file: str) -> None:
    """List the blocks of an arroyopy pipeline file (blocks:), importing nothing."""
    click.echo(f"Blocks in {pipeline_file}:\n")
    for index, item in enumerate(_load(pipeline_file), 1):
        click.echo(f"{index}. {item.name}")
        if item.description:
            click.echo(f"   Description: {item.description}")
        click.echo(f"   Operator: {item.operator.spec}")
        click.echo(f"   Listeners: {len(item.listeners)}")
        click.echo(f"   Publishers: {len(item.publishers)}\n")
