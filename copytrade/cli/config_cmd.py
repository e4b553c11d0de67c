"""`copytrade config validate` and `copytrade config show`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from copytrade.cli.fast_help import FastHelpGroup
from copytrade.errors import ConfigError

config_app = typer.Typer(
    name="config",
    help="Check and show the configuration.",
    cls=FastHelpGroup,  # `copytrade config validate --help` without pydantic
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

# Shared by every command that reads the configuration.
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="Configuration file to read (default: copytrade.toml in the copytrade home).",
    ),
]


@config_app.command("validate")
def validate_command(config: ConfigOption = None) -> None:
    """Check the configuration, tokens and secrets file; exit 3 if anything is wrong.

    Prints one line per problem ("error: WHERE: MESSAGE" or "warning: ...") and a
    summary. Warnings alone exit 0. Nothing is sent to Dhan.
    """
    from copytrade.config import load_config, problem_counts, validate

    loaded = load_config(config)
    problems = validate(loaded)
    for problem in problems:
        typer.echo(str(problem))
    counts = problem_counts(problems)
    summary = (
        f"{loaded.source}: {_plural(counts['error'], 'error')}, "
        f"{_plural(counts['warning'], 'warning')}"
    )
    if counts["error"]:
        raise ConfigError(summary)
    enabled = len(loaded.enabled_followers)
    typer.echo(f"{summary}; ok: 1 leader, {enabled} of {len(loaded.followers)} followers enabled")


@config_app.command("show")
def show_command(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective configuration, defaults filled in; tokens are never shown.

    Each token appears only as "set (env NAME)", "set (secrets file)" or "MISSING".
    The TOML form is itself a valid copytrade.toml.
    """
    from copytrade.cli.render import render_toml
    from copytrade.config import load_config, redacted, token_sources

    loaded = load_config(config)
    data = redacted(loaded, token_sources(loaded))
    typer.echo(json.dumps(data, indent=2) if as_json else render_toml(data))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
