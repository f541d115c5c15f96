"""The ``arroyo`` command: ``arroyo listener|operator|publisher`` run one service each,
``arroyo demo`` runs a live three-process chain, ``arroyo status`` reads a ledger."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import yaml

from arroyo_core import registry
from arroyo_core.errors import ConfigError
from arroyo_core.service import ROLES, load_config

from .serve import serve, setup_logging


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-o/--option")
        options[key.replace("-", "_")] = yaml.safe_load(value)  # 10 -> int, [1,2] -> list
    return options


def _service_command(role: str) -> click.Command:
    spec = ROLES[role]
    plugin_help = {
        "source": "Listener plug-in that produces the data: a registered name "
                  f"({', '.join(registry.names('listener'))}) or package.module:Class.",
        "operator": "Operator plug-in: a registered name "
                    f"({', '.join(registry.names('operator'))}) or package.module:Class.",
        "sink": "Publisher plug-in that sends to the outside world: a registered name "
                f"({', '.join(registry.names('publisher'))}) or package.module:Class.",
    }[spec.plugin_key]

    def command(config_file: str | None, option: tuple[str, ...], check: bool,
                log_level: str, **given: Any) -> None:
        try:
            config = load_config(config_file) if config_file else {}
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        options = _parse_options(option)
        if options:
            config["options"] = {**(config.get("options") or {}), **options}
        config.update({key: value for key, value in given.items()
                       if value is not None and value != ()})
        setup_logging(log_level, config.get("name") or role)
        sys.exit(serve(role, config, check=check))

    params: list[click.Parameter] = [
        click.Option(["-c", "--config", "config_file"],
                     type=click.Path(exists=True, dir_okay=False),
                     help="TOML or YAML file with the same keys as these options "
                          "(options given here win)."),
        click.Option(["--name"], help="Name used in logs and the ledger [default: the role]."),
        click.Option([f"--{spec.plugin_key}"], help=plugin_help
                     + (f" [default: {spec.default_plugin}]" if spec.default_plugin else "")),
        click.Option(["-o", "--option"], multiple=True, metavar="KEY=VALUE",
                     help=f"Keyword argument for the {spec.plugin_key}; VALUE is read as YAML "
                          "(10, 0.5, [512,512], text). Repeatable."),
    ]
    if spec.has_input:
        params += [
            click.Option(["--in"], metavar="ENDPOINT",
                         help="ZeroMQ endpoint to receive from: '>tcp://host:port' connects "
                              "(the default), '@tcp://*:port' binds."),
            click.Option(["--in-pattern"], type=click.Choice(["pull", "sub"]),
                         help="Receiving socket pattern [default: pull]."),
            click.Option(["--in-option"], multiple=True, metavar="KEY=VALUE",
                         help="Keyword argument for the receiving link (hwm, heartbeat_ms, "
                              "...); VALUE is read as YAML. Repeatable."),
        ]
    if spec.has_output:
        params += [
            click.Option(["--out"], metavar="ENDPOINT", multiple=True,
                         help="ZeroMQ endpoint to send to: '@tcp://*:port' binds (the default), "
                              "'>tcp://host:port' connects. Repeatable: one socket each."),
            click.Option(["--out-pattern"], type=click.Choice(["push", "pub"]),
                         help="Sending socket pattern: push blocks when no peer takes messages, "
                              "pub fans out to every subscriber [default: push]."),
            click.Option(["--out-option"], multiple=True, metavar="KEY=VALUE",
                         help="Keyword argument for the sending links (hwm, overflow, "
                              "linger_ms, ...); VALUE is read as YAML. Repeatable."),
        ]
    params += [
        click.Option(["--stats"], metavar="ENDPOINT",
                     help="Bind a status socket here for 'arroyo status' (e.g. tcp://127.0.0.1:6000)."),
        click.Option(["--queue-size"], type=int,
                     help="Messages held between receiving and processing [default: 64]."),
        click.Option(["--queue-bytes"], type=int,
                     help="Bytes held between receiving and processing [default: 1 GiB]."),
        click.Option(["--drain-timeout"], type=float,
                     help="Seconds a stop may take to finish the run and send what is held "
                          "[default: 10]."),
        click.Option(["--memory-limit"], metavar="SIZE",
                     help="Bytes the service may hold in queues (e.g. 512MiB), shared equally "
                          "by the input link, the queue and the output links; sets their "
                          "high-water marks from the message size (docs/reliability.md)."),
        click.Option(["--queue-policy"],
                     type=click.Choice(["block", "drop-newest", "drop-oldest", "keep-latest"]),
                     help="What a full queue does with a new event [default: block]."),
        click.Option(["--check"], is_flag=True,
                     help="Check the configuration (plug-ins, options, endpoints) and exit "
                          "without opening sockets."),
        click.Option(["--log-level"], default="info", show_default=True,
                     type=click.Choice(["debug", "info", "warning", "error"])),
    ]

    def callback(**kwargs: Any) -> None:
        if isinstance(kwargs.get("out"), tuple):
            kwargs["out"] = list(kwargs["out"]) or None
        for link in ("in", "out"):
            pairs = kwargs.pop(f"{link}_option", ())
            kwargs[f"{link}_options"] = _parse_options(pairs) if pairs else None
        command(**kwargs)

    doc = {
        "listener": "Run a listener service: take data from a source and publish Arroyo "
                    "messages on a ZeroMQ socket.",
        "operator": "Run an operator service: receive Arroyo messages, run an operator on "
                    "each and publish the results.",
        "publisher": "Run a publisher service: receive Arroyo messages and hand them to a "
                     "sink (statistics, files, another system).",
    }[role]
    return click.Command(role, callback=callback, params=params, help=doc)


@click.group()
@click.version_option(package_name="arroyo-stream")
def main() -> None:
    """Arroyo: stream detector data through processing services over ZeroMQ."""


for _role in ROLES:
    main.add_command(_service_command(_role))


@main.command()
@click.argument("endpoints", nargs=-1, required=True)
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait per service.")
@click.option("--json", "as_json", is_flag=True, help="Print each ledger as JSON instead of the "
              "chain table.")
def status(endpoints: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Print the loss ledger of the services whose status sockets are at ENDPOINTS: give
    every service of a chain to see, per link, what was received, missed (with the missing
    ranges), duplicated, malformed, sent and dropped, and per hop what went unaccounted."""
    from arroyo_core.status import ServiceStatus
    from services.status_server import query_status

    from .ledger_table import render

    replies, errors = [], []
    for endpoint in endpoints:
        try:
            reply = ServiceStatus.from_dict(query_status(endpoint, timeout))
        except TimeoutError as exc:
            click.echo(f"{endpoint}: {exc}", err=True)
            errors.append(f"{endpoint}: {exc}")
            continue
        if as_json:
            click.echo(json.dumps(reply.to_dict(), indent=2, default=str))
        replies.append(reply)
    if not as_json:
        click.echo(render(replies, errors))
    sys.exit(1 if errors else 0)


from .demo import demo  # noqa: E402  (registers itself on main)

main.add_command(demo)

from .keys_cli import keys  # noqa: E402

main.add_command(keys)

from .chain_cli import check, deploy, run  # noqa: E402  (chain files: run, check, deploy)

for _command in (run, check, deploy):
    main.add_command(_command)
