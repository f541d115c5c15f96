"""``arroyo run|check|deploy CHAIN_FILE``: one chain file drives every way of running a chain;
``arroyo service CHAIN_FILE NAME`` runs one of its services (what the others start)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from arroyo_core.errors import ConfigError

from .blocks import is_blocks_file
from .blocks_cli import run_blocks, validate_blocks
from .chain import TARGETS, Chain, Target, load_chain
from .chain_runner import check_chain, run_chain
from .chain_security import ensure_keys, secure_service
from .deploy import compose_file, startsecs, supervisor_conf
from .serve import serve, setup_logging
from .service_options import parse_pairs
from .workdir import at_home, home_of

EXIT_CONFIG = 2
log = logging.getLogger("arroyo.service")


def _select_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("-s", "--service", "--block", "services", multiple=True,
                           metavar="NAME", help="Only this service, or block of an "
                           "arroyopy pipeline file (repeatable) [default: all].")(command)
    command = click.option("--host", metavar="HOST",
                           help="Only the services whose 'host' is HOST: what one machine of "
                                "a multi-host chain runs.")(command)
    return click.argument("chain_file", type=click.Path(exists=True, dir_okay=False))(command)


def _load(chain_file: str, services: tuple[str, ...] = (), host: str | None = None) -> Chain:
    try:
        chain = load_chain(chain_file)
        return chain.select(services, host) if services or host else chain
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _write(text: str, output: str) -> None:
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text)
    except OSError as exc:
        click.echo(f"error: -o/--output: cannot write {output}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"wrote {output}", err=True)


def _keys(chain: Chain) -> None:
    """Make the key pairs the chain's CURVE links lack (the first deploy; later ones reuse)."""
    try:
        made = ensure_keys(chain)
    except (ConfigError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    for public in made:
        click.echo(f"made key pair {public} (+ _secret, mode 0600)", err=True)
    if chain.insecure:
        click.echo(f"warning: chain {chain.name!r} is insecure (insecure = true): links and "
                   "status sockets bind as written, without CURVE or loopback", err=True)


def _warn_links(chain: Chain) -> None:
    for problem in chain.problems():
        click.echo(f"warning: {problem} (see `arroyo check`)", err=True)


@click.command("run")
@_select_options
def run(chain_file: str, services: tuple[str, ...], host: str | None) -> None:
    """Run the services of CHAIN_FILE here in the foreground, each as a child process with
    its log lines shown; Ctrl-C (or SIGTERM) stops them all without losing what is in flight.
    An arroyopy pipeline file (YAML with blocks:) runs each block as such a process."""
    if is_blocks_file(chain_file):
        sys.exit(run_blocks(chain_file, services))
    chain = _load(chain_file, services, host)
    _keys(chain)
    sys.exit(run_chain(chain))


@click.command("service")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@click.option("--target", type=click.Choice(TARGETS), default="hosts", show_default=True,
              help="What {name} in an address stands for: the named service's host, or its "
                   "compose service name.")
@click.option("--check", is_flag=True,
              help="Check the service's configuration (plug-ins, options, addresses) and exit "
                   "without opening anything.")
@click.option("--replica", type=click.IntRange(min=0), metavar="K",
              help="Of a service with replicas = N: run its worker K (0 to N-1), named "
                   "NAME-K, its status port + K.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Set an option of the service's plug-in over the file's (e.g. -o rate=100 "
                   "for a simulated source; VALUE read as YAML). Repeatable.")
@click.option("--status", metavar="ADDRESS",
              help="Serve the status socket at ADDRESS instead of the file's.")
@click.option("--metrics", metavar="HOST:PORT",
              help="Serve Prometheus metrics at HOST:PORT (or :PORT) instead of the file's "
                   "(of a pool's worker K, at PORT + K).")
def service(chain_file: str, name: str, target: Target, check: bool, replica: int | None,
            log_level: str, options: tuple[str, ...], status: str | None,
            metrics: str | None) -> None:
    """Run service NAME of CHAIN_FILE in the foreground, with the settings the file gives it.
    `arroyo run`, the generated supervisor programs and compose services all start this. It
    runs in CHAIN_FILE's directory: relative paths are read there, and user code
    (package.module:Class) is imported from there first."""
    setup_logging(log_level, name if replica is None else f"{name}-{replica}")
    chain = _load(chain_file, (name,))
    # Under supervisord (which sets SUPERVISOR_ENABLED in its programs' environment), an
    # end sooner than the program's startsecs would count as a failed start and run again.
    min_uptime = startsecs(chain, name) if os.environ.get("SUPERVISOR_ENABLED") else 0.0
    with at_home(home_of(chain_file)):
        try:
            config, info, warnings = secure_service(
                chain, name, chain.resolve(name, target, replica), target)
            for line in info:
                log.info("%s %s", name, line)
            for line in warnings:
                log.warning("%s: %s", name, line)
            if options:
                given = parse_pairs(options, "-o/--option")
                config = replace(config, options={**config.options, **given})
            if status:
                config = replace(config, status=status)
            if metrics:
                from .metrics_deploy import nth_metrics

                config = replace(config, metrics=nth_metrics(metrics, replica or 0))
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        sys.exit(serve(config, check=check, min_uptime=min_uptime))


@click.command("check")
@_select_options
def check(chain_file: str, services: tuple[str, ...], host: str | None) -> None:
    """Check CHAIN_FILE: run every service's --check and check that every address a service
    connects to is bound by a service of the chain (with matching socket patterns). An
    arroyopy pipeline file (blocks:) is checked as `arroyo validate` checks it."""
    if is_blocks_file(chain_file):
        sys.exit(validate_blocks(chain_file, services))
    sys.exit(check_chain(_load(chain_file, services, host)))


@click.group("deploy")
def deploy() -> None:
    """Write the configuration that runs a chain under supervisor or docker compose."""


@deploy.command("supervisor")
@_select_options
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write ('-': standard output), e.g. /etc/supervisor/conf.d/x.conf.")
@click.option("--arroyo", "arroyo", default="arroyo", show_default=True, metavar="COMMAND",
              help="How supervisord starts arroyo, e.g. /opt/arroyo/venv/bin/arroyo.")
@click.option("--log-dir", metavar="DIR",
              help="Write each service's log to DIR/NAME.log [default: supervisord's childlogdir].")
@click.option("--chain-path", metavar="PATH",
              help="Where supervisord finds CHAIN_FILE, which its programs read; supervisord "
                   "expands %(here)s to the directory of the generated file, e.g. "
                   "'%(here)s/../../chain.toml' [default: CHAIN_FILE's absolute path].")
def deploy_supervisor(chain_file: str, services: tuple[str, ...], host: str | None, output: str,
                      arroyo: str, log_dir: str | None, chain_path: str | None) -> None:
    """Write a supervisord include file for CHAIN_FILE: a [group:CHAIN] and one [program:x]
    per service (`arroyo service CHAIN_FILE NAME`), with every key commented."""
    chain = _load(chain_file, services, host)
    _warn_links(chain)
    _keys(chain)
    _write(supervisor_conf(chain, arroyo, log_dir, source=chain_file, chain_path=chain_path),
           output)


@deploy.command("prometheus")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write ('-': standard output), e.g. prometheus.yml.")
@click.option("--target", type=click.Choice(TARGETS), default="hosts", show_default=True,
              help="Scrape the services as `arroyo deploy supervisor` (hosts) or `arroyo "
                   "deploy compose` runs them.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between scrapes.")
def deploy_prometheus(chain_file: str, output: str, target: Target, interval: float) -> None:
    """Write a Prometheus config that scrapes the metrics of every service of CHAIN_FILE,
    where the generated supervisor or compose configs serve them (or where the chain file's
    `metrics` keys say)."""
    from .metrics_deploy import scrape_config

    try:
        text = scrape_config(_load(chain_file), target, interval)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    _write(text, output)


@deploy.command("compose")
@click.argument("chain_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write ('-': standard output), e.g. docker-compose.yml.")
@click.option("--image", default="arroyo-stream:local", show_default=True,
              help="Name of the image built from the Dockerfile.")
@click.option("--context", default=".", show_default=True,
              help="Build context (the checkout), relative to the compose file.")
@click.option("--dockerfile", default="deploy/Dockerfile", show_default=True,
              help="Dockerfile, relative to the build context.")
@click.option("--chain-path", metavar="PATH",
              help="CHAIN_FILE relative to the compose file, mounted into every container "
                   "[default: worked out from CHAIN_FILE and --output].")
def deploy_compose(chain_file: str, output: str, image: str, context: str,
                   dockerfile: str, chain_path: str | None) -> None:
    """Write a docker compose file for CHAIN_FILE: one container per service, each running
    `arroyo service` on the chain file (mounted read-only), reaching each other by service
    name, with healthchecks from `arroyo status`."""
    chain = _load(chain_file)
    _warn_links(chain)
    if chain.insecure:
        click.echo(f"warning: chain {chain.name!r} is insecure (insecure = true)", err=True)
    if chain_path is None:
        base = Path(output).resolve().parent if output != "-" else Path.cwd()
        chain_path = os.path.relpath(Path(chain_file).resolve(), base)
    _write(compose_file(chain, image, context, dockerfile, source=chain_file,
                        chain_path=chain_path), output)
