"""Typer's command group, without importing pydantic on the way to a subcommand's --help."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


class FastHelpGroup(TyperGroup):
    """A group whose own --help flag reads False, not None, when it is not given.

    Typer (0.2x) coerces every parameter value that is not already a bool through a
    pydantic TypeAdapter, importing pydantic (~150 ms) the first time. A group's
    --help left out reads None, so `copytrade follow --help` paid for pydantic only
    to learn that the root's --help was not given. False is what None meant.
    """

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option
