"""``arroyo view ADDRESS``: a publisher service whose sink is the browser live view
(:mod:`arroyo_core.view`), set up as docs/reliability.md says a viewer should be: a
subscriber (on ZeroMQ) whose queue keeps only the latest event, so that neither the view
nor a slow browser ever holds up the stream it watches."""

from __future__ import annotations

import sys

import click

from arroyo_core.address import Address
from arroyo_core.config import ServiceConfig
from arroyo_core.errors import ConfigError

from .serve import refuse, serve, setup_logging
from .service_options import parse_pairs


@click.command()
@click.argument("address")
@click.option("--port", default=8080, show_default=True,
              help="TCP port of the web page (0: one the system picks, logged).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the page listens on (0.0.0.0: every network).")
@click.option("--image", default=None, help="Payload array shown as the image [default: the "
              "first with 2 or more dimensions].")
@click.option("--in-pattern", default=None, help="How the input receives [default: sub on "
              "tcp:// and ipc://, so the view gets a copy of a PUB link's stream; else the "
              "transport's].")
@click.option("--in-option", "in_options", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for the input link (e.g. hwm=4). Repeatable.")
@click.option("--status", default=None, help="Address of the service's status socket.")
@click.option("--name", default="view", show_default=True)
def view(address: str, port: int, host: str, image: str | None, in_pattern: str | None,
         in_options: tuple[str, ...], status: str | None, name: str) -> None:
    """Serve a live view of the stream at ADDRESS (e.g. '>tcp://host:5556', an output
    with --out-pattern pub) on a web page: the latest frame as an image, with a colour map
    and a log scale, the latest 1-D arrays as plots, run and frame numbers and rates.
    The same as `arroyo publisher --in ADDRESS --in-pattern sub --in-option hwm=4
    --queue-policy keep-latest --sink view -o port=PORT`."""
    setup_logging("info", name, "text")
    try:
        scheme = Address.parse(address, bind_by_default=False).scheme
        options: dict[str, object] = {"hwm": 4} if scheme in ("tcp", "ipc") else {}
        options.update(parse_pairs(in_options, "--in-option"))
        config = ServiceConfig.from_mapping("publisher", {
            "name": name, "in": address, "sink": "view", "queue_policy": "keep-latest",
            "in_pattern": in_pattern or ("sub" if scheme in ("tcp", "ipc") else None),
            "in_options": options, "status": status,
            "drain_timeout": 1.0,  # a view keeps nothing that a stop should wait to deliver
            "options": {"port": port, "host": host, "image": image}})
    except ConfigError as exc:
        sys.exit(refuse(exc))
    sys.exit(serve(config))
