"""``arroyo listener|operator|publisher --help`` with the options of the plug-in it names.

``arroyo listener --source simulated --help`` (or ``-c FILE --help`` with ``source`` in the
file) ends with the simulated source's ``-o`` options: each name, type and default from
the class signature and its text from the numpydoc ``Parameters`` section
(:func:`arroyo_core.arguments.parameters`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import click

from arroyo_core import registry
from arroyo_core.arguments import Parameter, metavar, parameters
from arroyo_core.config import ROLES, load_config
from arroyo_core.errors import ConfigError

from .workdir import at_home, home_of

NAMED = "arroyo.plugin"  # ctx.meta key: (plug-in spec, config file) named with --help


class ServiceCommand(click.Command):
    """The command of one role; its help lists the options of the plug-in it is given."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if set(args) & set(self.get_help_option_names(ctx)):
            ctx.meta[NAMED] = self._named(ctx, args)
        return super().parse_args(ctx, args)

    def _named(self, ctx: click.Context, args: Sequence[str]) -> tuple[str | None, str | None]:
        key = ROLES[str(self.name)].plugin_key
        try:  # a first look, without running any callback (--help's prints the help)
            opts, _, _ = self.make_parser(ctx).parse_args(list(args))
        except click.ClickException:
            return None, None
        spec, config_file = opts.get(key), opts.get("config_file")
        if not spec and config_file:
            try:
                spec = load_config(config_file).get(key)
            except ConfigError:
                pass
        return (spec if isinstance(spec, str) else None), config_file

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        role = ROLES[str(self.name)]
        spec, config_file = ctx.meta.get(NAMED) or (None, None)
        if not spec:
            formatter.write_paragraph()
            formatter.write_text(f"Give --{role.plugin_key} NAME with --help to list the "
                                 f"options (-o KEY=VALUE) of that {role.plugin_key}.")
            return
        with formatter.section(f"Options of {role.plugin_key} '{spec}' (-o KEY=VALUE)"):
            formatter.write_dl(plugin_rows(role.plugin_kind, spec, config_file))


def plugin_rows(kind: str, spec: str, config_file: str | None = None) -> list[tuple[str, str]]:
    """(``name=TYPE``, description with its default) for each option of plug-in ``spec``,
    found as the service would find it (:mod:`services.workdir`)."""
    try:
        with at_home(home_of(config_file), with_cwd=True):
            factory = registry.resolve(kind, spec)
    except ConfigError as exc:
        return [("(unknown)", str(exc))]
    params, others = parameters(factory)
    rows = [(f"{param.name}={metavar(param.annotation)}", _text(param)) for param in params]
    if others:
        rows.append(("...", "Any other option is passed on (e.g. to the link's transport)."))
    return rows or [("(none)", f"{spec} takes no options.")]


def _text(param: Parameter) -> str:
    text = _plain(param.help)
    if param.required:
        return f"{text} [required]".strip()
    if param.default is not None and param.default is not inspect.Parameter.empty:
        text += f" [default: {_shown(param.default)}]"
    return text.strip()


def _plain(text: str) -> str:
    """reStructuredText markup as plain text: ``x`` as x, :class:`~a.B` as a.B."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
