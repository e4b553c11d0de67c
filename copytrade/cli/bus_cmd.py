"""`copytrade bus init`: the nats-server configuration and one credentials file per user for
followers served by agents on their own hosts ([bus] mode = "nats"; docs/distributed.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from copytrade.cli.fast_help import FastHelpGroup

if TYPE_CHECKING:
    from copytrade.config.bus_init import BusInitPlan

bus_app = typer.Typer(
    name="bus",
    help="Set up the NATS server that carries leader orders to followers on other hosts.",
    cls=FastHelpGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DEFAULT_URL = "nats://127.0.0.1:4222"  # config/bus_init.DEFAULT_URL, without importing it


@bus_app.command("init")
def init_command(
    # Optional as far as Click knows, so that none named is our one clear line (exit 2).
    followers: Annotated[list[str] | None, typer.Argument(
        metavar="FOLLOWER", show_default=False,
        help="The followers served by agents (their names in copytrade.toml); one or more.")
    ] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", metavar="DIR", show_default=False,
        help="Write the files into this directory (default: bus/ in the copytrade home).")
    ] = None,
    url: Annotated[str, typer.Option(
        "--url", metavar="nats://HOST:PORT",
        help="Where the server listens and clients connect: the address the agents reach "
        "(tls:// adds a tls block for your certificate).")] = DEFAULT_URL,
    leader_user: Annotated[str, typer.Option(
        "--leader-user", metavar="NAME", help="The leader's NATS user name.")] = "leader",
    force: Annotated[bool, typer.Option(
        "--force", help="Replace existing files (every password is new).")] = False,
) -> None:
    """Write nats-server.conf and a credentials file per user (all 0600, in a 0700 DIR).

    The leader's user may publish leader orders, run the streams and consumers and read
    results; each follower's agent user may only pull from its own consumer (agent-NAME)
    and publish its own results. Passwords are random and never printed. Prints the files
    written and the next steps. Exit 2 for a bad FOLLOWER or option, 3 if a file exists
    (--force replaces them), 7 if DIR cannot be written.
    """
    from copytrade.config.bus_init import plan_bus_init, write_bus_init
    from copytrade.home import home_paths

    directory = output if output is not None else home_paths().config_dir / "bus"
    plan = plan_bus_init(followers or [], directory=directory, url=url, leader_user=leader_user)
    written = write_bus_init(plan, force=force)
    for line in summary(plan, written):
        typer.echo(line)


def summary(plan: BusInitPlan, written: list[Path]) -> list[str]:
    """What was written and what to do next; names files, never their contents."""
    from copytrade.config.bus_init import SERVER_CONF, STORE_DIR, TLS_FILES

    conf = plan.directory / SERVER_CONF
    lines = [f"wrote {path}" for path in written]
    lines += ["", "Next steps:", f"1. Start the server (nats-server 2.10 or newer): "
              f"nats-server -c {conf}",
              f"   It listens on {plan.listen}; JetStream keeps its files in "
              f"{plan.directory / STORE_DIR}."]
    if not plan.tls and not plan.loopback:
        lines.append("   Note: nats:// is unencrypted: passwords and leader orders cross the "
                     "network in clear; prefer tls:// (copytrade bus init --help).")
    if plan.tls:
        cert, key = (plan.directory / name for name in TLS_FILES)
        lines.append(f"   tls://: put the server's certificate at {cert} and its key at {key}.")
    lines += ["2. On the leader's host, add to copytrade.toml (and remote = true to each "
              "of these followers' [[followers]] tables):",
              *_bus_table(plan.url, str(plan.directory / plan.leader.creds_name), "leader"),
              "3. On each follower's host: copy its creds file there (keep it 0600) next to "
              "its copytrade.toml, which holds [leader] client_id (no token), that one "
              "[[followers]] table with its token, and:"]
    for agent in plan.agents:
        lines += [f"   follower {agent.follower}:",
                  *_bus_table(plan.url, agent.creds_name, "agent", agent.follower)]
    lines.append("4. Start `copytrade follow` on the leader's host first (it creates each "
                 "agent's consumer), then on each follower's host.")
    lines.append("Each creds file holds a password: give each host only its own.")
    return lines


def _bus_table(url: str, creds_file: str, role: str, follower: str | None = None) -> list[str]:
    lines = ["     [bus]", '     mode = "nats"', f'     url = "{url}"', f'     role = "{role}"']
    if follower is not None:
        lines.append(f'     follower = "{follower}"')
    return [*lines, f'     creds_file = "{creds_file}"']
