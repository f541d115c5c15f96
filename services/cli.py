"""The ``arroyo`` command: ``arroyo listener|operator|publisher`` run one service each,
``arroyo demo`` runs a live three-process chain, ``arroyo status`` reads a ledger."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from arroyo_core.config import ROLES, ServiceConfig, load_config
from arroyo_core.errors import ConfigError

from .plugin_help import ServiceCommand
from .replicas import run_replicas
from .serve import LOG_FORMATS, refuse, serve, setup_logging
from .service_options import given_settings, merge, service_params
from .workdir import at_home, home_of

DOCS = {
    "listener": "Run a listener service: take data from a source and send Arroyo messages "
                "to the addresses given with --out.",
    "operator": "Run an operator service: receive Arroyo messages, run an operator on each "
                "and send the results on.",
    "publisher": "Run a publisher service: receive Arroyo messages and hand them to a sink "
                 "(statistics, files, another system).",
}


def _service_command(role: str) -> click.Command:
    """``arroyo ROLE``: its options are the role's settings (arroyo_core.config)."""

    def callback(config_file: str | None, check: bool, log_level: str, log_format: str,
                 **values: Any) -> None:
        try:
            data = load_config(config_file) if config_file else {}
        except ConfigError as exc:
            sys.exit(refuse(exc))
        data = merge(data, given_settings(role, values))
        name = data["name"] if isinstance(data.get("name"), str) else role
        setup_logging(log_level, name, log_format)
        with at_home(home_of(config_file), with_cwd=True):
            try:
                config = ServiceConfig.from_mapping(role, data)
            except ConfigError as exc:
                sys.exit(refuse(exc))
            if config.replicas > 1:
                sys.exit(run_replicas(config, sys.argv[1:], check))
            sys.exit(serve(config, check=check))

    params: list[click.Parameter] = [
        click.Option(["-c", "--config", "config_file"],
                     type=click.Path(exists=True, dir_okay=False),
                     help="TOML or YAML file with the same keys as these options "
                          "(options given here win). The service runs in its directory: "
                          "relative paths are read there, and user code is imported from "
                          "there first."),
        *service_params(role),
        click.Option(["--check"], is_flag=True,
                     help="Check the configuration (plug-ins and their options, links, "
                          "addresses, packages they need) and exit without opening anything."),
        click.Option(["--log-level"], default="info", show_default=True,
                     type=click.Choice(["debug", "info", "warning", "error"])),
        click.Option(["--log-format"], default="text", show_default=True,
                     type=click.Choice(LOG_FORMATS),
                     help="text lines, or json: one JSON object a line (time, service, "
                          "level, logger, message), for a log collector."),
    ]
    return ServiceCommand(role, callback=callback, params=params, help=DOCS[role])


@click.group()
@click.version_option(package_name="arroyo-stream")
def main() -> None:
    """Arroyo: stream detector data through processing services, linked by address
    (ZeroMQ tcp:// and ipc://, redis://, or any registered transport)."""


for _role in ROLES:
    main.add_command(_service_command(_role))


STATUS_LOST = 3  # arroyo status: a run that ended lost frames


@main.command()
@click.argument("endpoints", nargs=-1, required=True, metavar="ADDRESS|CHAIN_FILE...")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait per service.")
@click.option("--json", "as_json", is_flag=True, help="Print the status records as one JSON "
              "document instead of the chain table: one service's record, or a list of them "
              "(in the order given) for several.")
def status(endpoints: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Print the loss ledger of the services whose status sockets are at ADDRESS...: give
    every service of a chain to see, per link, what was received, missed (with the missing
    ranges), duplicated, malformed, sent and dropped, and per hop what went unaccounted.
    A chain file stands for every service of it that has a status socket.

    \b
    Exit status, for scripts and healthchecks:
      0  every service answered and no run that ended lost a frame
      1  a service did not answer (its record is missing)
      2  the arguments are wrong (not an address, a chain file without status sockets)
      3  a run that ended lost frames (filtered, failed and dropped by policy are not lost)
    """
    from arroyo_core.status import ServiceStatus
    from services.status_server import query_status, status_endpoints

    from .ledger_table import lost, render

    try:
        endpoints = tuple(status_endpoints(endpoints))
    except ConfigError as exc:
        sys.exit(refuse(exc))

    replies, errors = [], []
    for endpoint in endpoints:
        try:
            reply = ServiceStatus.from_dict(query_status(endpoint, timeout))
        except TimeoutError as exc:
            click.echo(f"{endpoint}: {exc}", err=True)
            errors.append(f"{endpoint}: {exc}")
            continue
        replies.append(reply)
    if as_json:
        records = [reply.to_dict() for reply in replies]
        document = records[0] if len(endpoints) == 1 and records else records
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        click.echo(render(replies, errors))
    sys.exit(1 if errors else STATUS_LOST if lost(replies) else 0)


from .demo import demo  # noqa: E402  (registers itself on main)

main.add_command(demo)

from .keys_cli import keys  # noqa: E402

main.add_command(keys)

from .chain_cli import check, deploy, run, service  # noqa: E402  (chain files)

for _command in (run, check, deploy, service):
    main.add_command(_command)

from .bench import bench  # noqa: E402

main.add_command(bench)

from .blocks_cli import block, list_blocks, validate  # noqa: E402  (arroyopy pipeline files)

for _command in (block, validate, list_blocks):
    main.add_command(_command)

from .monitor_cli import monitor  # noqa: E402  (a live terminal view of a chain)

main.add_command(monitor)

from .view_cli import view  # noqa: E402  (the browser live view)

main.add_command(view)

from .stream_cli import record, replay, tap  # noqa: E402  (attach to a running chain)

for _command in (tap, record, replay):
    main.add_command(_command)
