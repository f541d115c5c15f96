"""``arroyo keys``: make the CURVE key pairs that secure links across machines."""

from __future__ import annotations

import sys

import click

from arroyo_core.errors import ConfigError
from arroyo_core.transports.zmq.curve import generate_key_pair


@click.group()
def keys() -> None:
    """Make CURVE key pairs for encrypted, authenticated links (see docs/security.md)."""


@keys.command()
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Where to write the two files.")
def generate(name: str, directory: str) -> None:
    """Write NAME.key (public: give it to peers) and NAME.key_secret (secret: readable by
    you only, mode 0600; it never leaves this host). An existing pair is not overwritten."""
    try:
        public, secret = generate_key_pair(name, directory)
    except (ConfigError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"public key: {public}")
    click.echo(f"secret key: {secret} (mode 0600)")
