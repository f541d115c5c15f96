"""``arroyo run|check|deploy CHAIN_FILE``: one chain file drives every way of running a chain."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from arroyo_core.chain import Chain, load_chain
from arroyo_core.errors import ConfigError

from .chain_runner import check_chain, run_chain
from .deploy import compose_file, supervisor_conf

EXIT_CONFIG = 2


def _select_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("-s", "--service", "services", multiple=True, metavar="NAME",
                           help="Only this service (repeatable) [default: all].")(command)
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
    else:
        Path(output).write_text(text)
        click.echo(f"wrote {output}", err=True)


def _warn_links(chain: Chain) -> None:
    for problem in chain.problems():
        click.echo(f"warning: {problem} (see `arroyo check`)", err=True)


@click.command("run")
@_select_options
def run(chain_file: str, services: tuple[str, ...], host: str | None) -> None:
    """Run the services of CHAIN_FILE here in the foreground, each as a child process with
    its log lines shown; Ctrl-C (or SIGTERM) stops them all without losing what is in flight."""
    sys.exit(run_chain(_load(chain_file, services, host)))


@click.command("check")
@_select_options
def check(chain_file: str, services: tuple[str, ...], host: str | None) -> None:
    """Check CHAIN_FILE: run every service's --check and check that every address a service
    connects to is bound by a service of the chain (with matching socket patterns)."""
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
def deploy_supervisor(chain_file: str, services: tuple[str, ...], host: str | None, output: str,
                      arroyo: str, log_dir: str | None) -> None:
    """Write a supervisord include file for CHAIN_FILE: a [group:CHAIN] and one [program:x]
    per service, with every key commented."""
    chain = _load(chain_file, services, host)
    _warn_links(chain)
    _write(supervisor_conf(chain, arroyo, log_dir, source=chain_file), output)


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
def deploy_compose(chain_file: str, output: str, image: str, context: str,
                   dockerfile: str) -> None:
    """Write a docker compose file for CHAIN_FILE: one container per service, reaching each
    other by service name, with healthchecks from `arroyo status`."""
    chain = _load(chain_file)
    _warn_links(chain)
    _write(compose_file(chain, image, context, dockerfile, source=chain_file), output)
