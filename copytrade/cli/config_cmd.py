"""`copytrade config validate` and `copytrade config show`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

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
    from copytrade.config import load_config, redacted, token_sources

    loaded = load_config(config)
    data = redacted(loaded, token_sources(loaded))
    typer.echo(json.dumps(data, indent=2) if as_json else render_toml(data))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --- TOML text ---------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render_toml(data: dict[str, Any]) -> str:
    """The redacted config as TOML: tokens and unset options become comments."""
    lines = [
        f"# Effective configuration from {_one_line(data['source'] or '(no file)')}",
        "# Defaults are filled in; tokens are never shown.",
        "",
        "[leader]",
        *_table_lines(data["leader"]),
    ]
    for follower in data["followers"]:
        lines += ["", "[[followers]]", *_table_lines(follower)]
    settings = dict(data["settings"])
    freeze_limits = settings.pop("freeze_limits")
    lines += ["", "[settings]", *_table_lines(settings)]
    lines += ["", "[settings.freeze_limits]", *_table_lines(freeze_limits)]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _table_lines(table: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in table.items():
        if key == "token":
            lines.append(f"# token: {value}")
        elif value is None:
            lines.append(f"# {key}: not set")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return lines


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, once DEL (raw in JSON, not in TOML) is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
