"""`copytrade config init`, `copytrade config validate` and `copytrade config show`."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from copytrade.cli.fast_help import FastHelpGroup
from copytrade.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from copytrade.config.init import FollowerSpec, SimUrls
    from copytrade.home import HomePaths
    from copytrade.secret import Secret

config_app = typer.Typer(
    name="config",
    help="Write, check and show the configuration.",
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


# --- config init --------------------------------------------------------------------------

SIM_DEFAULT_URL = "http://127.0.0.1:8181/v2"  # model.DEFAULT_SIM_API_URL, without importing it
ASK_ATTEMPTS = 5  # answers refused in a row before config init gives up on a prompt


def with_sim_value(args: Sequence[str]) -> list[str]:
    """`--sim` followed by nothing or by another option means the emulator's default URL.

    Typer 0.2x cannot declare an option whose value is optional (its `is_flag=False,
    flag_value=` is deprecated and ignored), so the default is put after a bare --sim.
    """
    out: list[str] = []
    for index, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            return out + list(args[index + 1 :])
        following = args[index + 1] if index + 1 < len(args) else None
        if arg == "--sim" and (following is None or following.startswith("-")):
            out.append(SIM_DEFAULT_URL)
    return out


class OptionalSimValue(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, with_sim_value(args))


@dataclass
class InitPlan:
    """What config init is about to write."""

    leader: str
    followers: tuple[FollowerSpec, ...]
    sim: SimUrls | None = None
    tokens: dict[str, Secret] = field(default_factory=dict)  # client id -> token

    def label(self, client_id: str) -> str:
        """How `copytrade token set` names the account: leader or the follower's name."""
        names = {f.client_id: f.name for f in self.followers}
        return names.get(client_id, "leader")

    @property
    def client_ids(self) -> list[str]:
        return [self.leader, *(f.client_id for f in self.followers)]


@config_app.command("init", cls=OptionalSimValue)
def init_command(
    sim: Annotated[str | None, typer.Option(
        "--sim", metavar="[REST_URL]", show_default=False,
        help="Paper trading: a setup for the emulator whose REST URL `copytrade sim` "
        f"prints (alone: {SIM_DEFAULT_URL}, its default). Starts nothing. Without "
        "--leader/--follower: leader 1000000001, followers family-1 (x1) and family-2 "
        "(x2); stand-in tokens; alerts to the emulator.")] = None,
    sim_ws: Annotated[str | None, typer.Option(
        "--sim-ws", metavar="WS_URL", show_default=False,
        help="The emulator's order-stream URL, as `copytrade sim` prints it "
        "(default: port 8182 on --sim's host).")] = None,
    leader: Annotated[str | None, typer.Option(
        "--leader", metavar="CLIENT_ID", show_default=False,
        help="The leader's Dhan client id (asked on a terminal if left out).")] = None,
    followers: Annotated[list[str] | None, typer.Option(
        "--follower", metavar="NAME=CLIENT_ID", show_default=False,
        help="A follower, at the leader's size (multiplier 1; edit the file for other "
        "sizing); repeat for each (asked on a terminal if left out).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing copytrade.toml.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", metavar="PATH", show_default=False,
        help="Write this file instead of copytrade.toml in the copytrade home "
        "(secrets.toml is always the home's).")] = None,
) -> None:
    """Write copytrade.toml, and secrets.toml with any tokens (both 0600).

    On a terminal, asks for what the options leave out: the leader, the followers and
    each token (hidden; Enter leaves it for `copytrade token set`). Tokens are never
    taken from the command line. Not on a terminal, a missing --leader or --follower
    is an error (exit 2). Prints the files written and the commands to run next.
    Exit 3 if copytrade.toml exists (--force replaces it) or secrets.toml is unsafe.
    """
    from copytrade.home import home_paths

    paths = home_paths()
    target = config if config is not None else paths.config_file
    if sim_ws is not None and sim is None:
        raise UsageError("--sim-ws goes with --sim: copytrade config init --sim REST_URL "
                         "--sim-ws WS_URL")
    _refuse_overwrite(target, force)
    plan = (_sim_plan(sim, sim_ws, leader, followers or []) if sim is not None
            else _dhan_plan(leader, followers or [], ask=_stdin_is_terminal()))
    written = _write(plan, target, paths)
    for line in _summary(plan, written, None if config is None else target):
        typer.echo(line)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # no stdin, or closed
        return False


def _refuse_overwrite(target: Path, force: bool) -> None:
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give --config a file path")
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists: not overwritten; pass --force to replace "
                          "it, or --config PATH to write another file")


def _sim_plan(rest_url: str, ws_url: str | None, leader: str | None,
              followers: list[str]) -> InitPlan:
    from copytrade.config.init import (
        SIM_FOLLOWERS,
        SIM_LEADER,
        check_accounts,
        sim_token,
        sim_urls,
    )
    from copytrade.secret import Secret

    plan = InitPlan(_flag_client_id(leader) if leader else SIM_LEADER,
                    _flag_followers(followers) or SIM_FOLLOWERS, sim_urls(rest_url, ws_url))
    check_accounts(plan.leader, plan.followers)
    plan.tokens = {client_id: Secret(sim_token(client_id)) for client_id in plan.client_ids}
    return plan


def _dhan_plan(leader: str | None, followers: list[str], *, ask: bool) -> InitPlan:
    from copytrade.config.init import check_accounts

    specs = _flag_followers(followers)
    if leader is None and not ask:
        raise UsageError("--leader CLIENT_ID is missing (stdin is not a terminal, so it "
                         "cannot be asked); for paper trading use --sim")
    if not specs and not ask:
        raise UsageError("--follower NAME=CLIENT_ID is missing (stdin is not a terminal, so "
                         "it cannot be asked); repeat it for each follower")
    plan = InitPlan(_flag_client_id(leader) if leader else _ask_leader(), specs)
    if not plan.followers:
        plan.followers = _ask_followers(plan.leader)
    check_accounts(plan.leader, plan.followers)
    if ask:
        plan.tokens = _ask_tokens(plan)
    return plan


def _flag_client_id(text: str) -> str:
    from copytrade.config.init import client_id_problem

    problem = client_id_problem(text.strip())
    if problem:
        raise UsageError(f"--leader {text!r}: {problem}")
    return text.strip()


def _flag_followers(texts: list[str]) -> tuple[FollowerSpec, ...]:
    from copytrade.config.init import parse_follower

    return tuple(parse_follower(text) for text in texts)


# --- asking on a terminal -----------------------------------------------------------------


def _ask(question: str, problem: Callable[[str], str | None], **prompt: Any) -> str:
    """An answer `problem` has nothing against; each refusal says why, never the answer."""
    for _attempt in range(ASK_ATTEMPTS):
        answer = str(typer.prompt(question, **prompt)).strip()
        reason = problem(answer)
        if reason is None:
            return answer
        typer.echo(f"  {reason}", err=True)
    raise UsageError(f"no usable answer to {question!r} after {ASK_ATTEMPTS} tries")


def _ask_leader() -> str:
    from copytrade.config.init import client_id_problem

    return _ask("Leader's Dhan client id", client_id_problem)


def _ask_followers(leader: str) -> tuple[FollowerSpec, ...]:
    from copytrade.config.init import MAX_FOLLOWERS

    specs: list[FollowerSpec] = []
    for number in range(1, MAX_FOLLOWERS + 1):
        spec = _ask_follower(number, leader, specs)
        if spec is None:
            break
        specs.append(spec)
    return tuple(specs)


def _ask_follower(number: int, leader: str, earlier: list[FollowerSpec]) -> FollowerSpec | None:
    """The next follower, or None when the name is left empty (after the first)."""
    from copytrade.config.init import (
        FollowerSpec,
        client_id_problem,
        multiplier_problem,
        name_problem,
    )

    names = {spec.name.casefold() for spec in earlier}
    ids = {leader, *(spec.client_id for spec in earlier)}

    def name_check(text: str) -> str | None:
        if not text:
            return "at least one follower is needed" if number == 1 else None
        return "that name is taken" if text.casefold() in names else name_problem(text)

    def id_check(text: str) -> str | None:
        return "that account is already in the setup" if text in ids else client_id_problem(text)

    first = number == 1
    name = _ask(f"Follower {number} name" + ("" if first else " (Enter: done)"), name_check,
                default=None if first else "", show_default=False)
    if not name:
        return None
    client_id = _ask(f"{name}'s Dhan client id", id_check)
    multiplier = _ask(f"{name}'s multiplier (the leader's lots times it)",
                      _multiplier_check(multiplier_problem), default="1.0")
    return FollowerSpec(name, client_id, float(multiplier))


def _multiplier_check(in_range: Callable[[float], str | None]) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        try:
            value = float(text)
        except ValueError:
            return "a number, e.g. 1.0 or 0.5"
        return in_range(value)

    return check


def _ask_tokens(plan: InitPlan) -> dict[str, Secret]:
    """Each account's token by hidden prompt; Enter leaves it for `copytrade token set`."""
    from copytrade.config.tokens import token_shape_problem
    from copytrade.secret import Secret

    tokens: dict[str, Secret] = {}
    for client_id in plan.client_ids:
        question = (f"Access token of {plan.label(client_id)} ({client_id}), hidden; "
                    "Enter: set it later")
        try:
            token = _ask(question, lambda text: token_shape_problem(text) if text else None,
                         default="", show_default=False, hide_input=True)
        except UsageError:
            typer.echo(f"  no token kept for {plan.label(client_id)}", err=True)
            continue
        if token:
            tokens[client_id] = Secret(token)
    return tokens


# --- writing ------------------------------------------------------------------------------


def _write(plan: InitPlan, target: Path, paths: HomePaths) -> list[str]:
    """Write the files (0600); what was written, one line each, for the summary."""
    from copytrade.config.init import config_text
    from copytrade.config.load import config_from_text
    from copytrade.config.tokens import read_secrets_file, store_token
    from copytrade.home import check_private_file, write_private_file

    text = config_text(plan.leader, plan.followers, plan.sim)
    config_from_text(text, target)  # never write a file that would not load
    if plan.tokens and paths.secrets_file.exists():
        check_private_file(paths.secrets_file)  # refused before anything is written
    # A stand-in never replaces a token the home has: it may be a live account's, which a
    # running follow would pick up and Dhan refuse.
    kept = read_secrets_file(paths.secrets_file) if plan.sim and plan.tokens else {}
    stored = {client_id: token for client_id, token in plan.tokens.items()
              if client_id not in kept}
    try:
        write_private_file(target, text)
        for client_id, token in stored.items():
            store_token(paths.secrets_file, client_id, token)
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or target}: {exc.strerror or exc}"
                          ) from None
    written = [f"wrote {target}"]
    if stored:
        whose = ", ".join(plan.label(client_id) for client_id in stored)
        kind = " (stand-ins: the emulator takes any token)" if plan.sim else ""
        written.append(f"wrote {paths.secrets_file}: tokens of {whose}{kind}")
    if len(stored) < len(plan.tokens):
        whose = ", ".join(plan.label(client_id) for client_id in plan.tokens
                          if client_id not in stored)
        written.append(f"kept the tokens {paths.secrets_file} has for {whose}")
    return written


def _summary(plan: InitPlan, written: list[str], config: Path | None) -> list[str]:
    option = f" --config {shlex.quote(str(config))}" if config is not None else ""
    lines = [*written, "next:"]
    if plan.sim is not None:
        start = "copytrade sim" if plan.sim.is_default else "copytrade sim (if not running)"
        lines.append(f"  {start:<37} # in another terminal; leave it running")
    for client_id in plan.client_ids:
        if client_id not in plan.tokens:
            command = f"copytrade token set {shlex.quote(plan.label(client_id))}{option}"
            lines.append(f"  {command:<37} # {client_id} has no token yet")
    lines += [f"  copytrade config validate{option}", f"  copytrade follow{option}"]
    return lines
