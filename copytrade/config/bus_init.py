"""`copytrade bus init`'s work: a nats-server configuration in which each user may do only
its own job, and one credentials file per user (docs/distributed.md explains each rule).

- The leader user publishes leader order events (`P.leader.>`), manages the two streams
  (S and S_RESULTS) and their consumers, and reads the agents' results.
- Each agent user (`agent-<follower>`) may only pull from and acknowledge its own durable
  consumer, read that consumer's info, publish its own results (`P.results.<follower>`),
  and receive replies under its own inbox prefix (`_INBOX_agent-<follower>`), so it cannot
  read the replies meant for the leader or another agent.

Passwords are random (secrets.token_urlsafe: 256 bits) and are written only to the files,
all 0600 in a 0700 directory; nothing here prints one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from copytrade.config.bus import (
    AGENT_FOLLOWER_NAME,
    BUS_USER,
    BusConfig,
    bus_url_problem,
    consumer_name,
)
from copytrade.config.urls import is_loopback
from copytrade.errors import ConfigError, StoreError, UsageError
from copytrade.home import ensure_private_dir, write_private_file
from copytrade.secret import Secret

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_PORT = 4222
DEFAULT_LEADER_USER = "leader"
SERVER_CONF = "nats-server.conf"
STORE_DIR = "jetstream"
TLS_FILES = ("server-cert.pem", "server-key.pem")
MAX_FOLLOWERS = 100  # a bound on one command line; far beyond any real setup
PASSWORD_BYTES = 32  # 43 characters of [A-Za-z0-9_-]


Grants = tuple[tuple[str, str], ...]  # (subject, why it is allowed)


@dataclass(frozen=True)
class BusUser:
    name: str
    password: Secret
    publish: Grants
    subscribe: Grants
    follower: str | None = None  # the follower an agent user serves; None: the leader
    inbox_prefix: str | None = None  # agents: replies only under their own prefix

    @property
    def creds_name(self) -> str:
        return f"{self.name}.creds"


@dataclass(frozen=True)
class BusInitPlan:
    directory: Path
    url: str
    bus: BusConfig  # the stream and subject names the permissions are written for
    users: tuple[BusUser, ...]

    @property
    def leader(self) -> BusUser:
        return self.users[0]

    @property
    def agents(self) -> tuple[BusUser, ...]:
        return self.users[1:]

    @property
    def listen(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        return f"{f'[{host}]' if ':' in host else host}:{parts.port or DEFAULT_PORT}"

    @property
    def loopback(self) -> bool:
        return is_loopback(urlsplit(self.url).hostname or "")

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "tls"

    def files(self) -> dict[str, str]:
        """File name -> text, the server's configuration first."""
        texts = {SERVER_CONF: server_conf(self)}
        texts.update({user.creds_name: creds_text(user) for user in self.users})
        return texts


# --- the plan ------------------------------------------------------------------------------


def plan_bus_init(followers: Sequence[str], *, directory: Path, url: str = DEFAULT_URL,
                  leader_user: str = DEFAULT_LEADER_USER, bus: BusConfig | None = None,
                  new_password: Callable[[], str] | None = None) -> BusInitPlan:
    """Users and permissions for a leader and one agent per follower; UsageError naming the
    first argument that cannot work."""
    bus = bus or BusConfig()
    problem = bus_url_problem(url)
    if problem:
        raise UsageError(f"--url: {problem}")
    names = _checked_followers(followers)
    if not BUS_USER.fullmatch(leader_user):
        raise UsageError("--leader-user: must be 1-64 letters, digits, '_' or '-'")
    if leader_user in {consumer_name(name) for name in names}:
        raise UsageError(f"--leader-user {leader_user!r} is also an agent's user name; "
                         "choose another")
    password = new_password or (lambda: secrets.token_urlsafe(PASSWORD_BYTES))
    leader = BusUser(leader_user, Secret(password()), *leader_permissions(bus))
    agents = tuple(
        BusUser(consumer_name(name), Secret(password()), *agent_permissions(bus, name),
                follower=name, inbox_prefix=agent_inbox_prefix(name))
        for name in names)
    return BusInitPlan(Path(directory).absolute(), url, bus, (leader, *agents))


def _checked_followers(followers: Sequence[str]) -> list[str]:
    if not followers:
        raise UsageError("name at least one follower served by an agent: "
                         "copytrade bus init FOLLOWER...")
    if len(followers) > MAX_FOLLOWERS:
        raise UsageError(f"{len(followers)} followers named; at most {MAX_FOLLOWERS}")
    seen: dict[str, str] = {}
    for name in followers:
        if not AGENT_FOLLOWER_NAME.fullmatch(name):
            shown = repr(name) if len(name) <= 40 else "(a long name)"
            raise UsageError(f"follower {shown}: must be a follower's name as in copytrade.toml: "
                             "1-32 letters, digits, '_' or '-', starting with a letter or digit "
                             "(no '.': it names a NATS consumer and subject)")
        if name.casefold() in seen:
            raise UsageError(f"follower {name!r} is named twice (as {seen[name.casefold()]!r})")
        seen[name.casefold()] = name
    return list(followers)


def agent_inbox_prefix(follower: str) -> str:
    """Where an agent's replies arrive: its own prefix, so no one else may subscribe there
    and it may subscribe nowhere else."""
    return f"_INBOX_{consumer_name(follower)}"


def leader_permissions(bus: BusConfig) -> tuple[Grants, Grants]:
    """(publish, subscribe) grants of the leader user: (subject, why) pairs."""
    publish: list[tuple[str, str]] = [
        (bus.leader_subjects, "leader order events"),
        ("$JS.API.INFO", "JetStream account info"),
        ("$JS.API.STREAM.NAMES", "find a stream by subject"),
        ("$JS.API.STREAM.LIST", "list the streams"),
    ]
    for stream in (bus.stream, bus.results_stream):
        publish += [
            (f"$JS.API.STREAM.*.{stream}", "create, update, inspect the stream"),
            (f"$JS.API.STREAM.MSG.GET.{stream}", "read one stored message back"),
            (f"$JS.API.CONSUMER.*.{stream}", "consumer names and list"),
            (f"$JS.API.CONSUMER.*.{stream}.>", "create, inspect (lag), delete consumers"),
            (f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>", "durable create (older API)"),
        ]
    publish += [
        (f"$JS.API.CONSUMER.MSG.NEXT.{bus.results_stream}.>", "pull the agents' results"),
        (f"$JS.ACK.{bus.results_stream}.>", "acknowledge the results read"),
    ]
    subscribe = [("_INBOX.>", "replies: publish acks, API answers, pulled results"),
                 (bus.results_subjects, "the agents' results, live")]
    return tuple(publish), tuple(subscribe)


def agent_permissions(bus: BusConfig, follower: str) -> tuple[Grants, Grants]:
    """(publish, subscribe) grants of an agent user: its own consumer and results only."""
    consumer = consumer_name(follower)
    publish = (
        (f"$JS.API.CONSUMER.MSG.NEXT.{bus.stream}.{consumer}", "pull its next events"),
        (f"$JS.API.CONSUMER.INFO.{bus.stream}.{consumer}", "its own consumer's state"),
        (f"$JS.ACK.{bus.stream}.{consumer}.>", "acknowledge what it pulled"),
        (bus.results_subject(follower), "its results (stored by the results stream)"),
    )
    subscribe = ((f"{agent_inbox_prefix(follower)}.>", "its replies, under its own prefix"),)
    return publish, subscribe


# --- the files -----------------------------------------------------------------------------


def server_conf(plan: BusInitPlan) -> str:
    directory = plan.directory
    lines = [
        "# nats-server configuration for copytrade's [bus] (written by `copytrade bus init`).",
        f"# Start it with: nats-server -c {directory / SERVER_CONF}",
        "# It holds every user's password: keep it 0600. Each permission says why beside it.",
        "",
        f"listen: {_quoted(plan.listen)}",
        "",
        "jetstream {",
        f"  store_dir: {_quoted(str(directory / STORE_DIR))}",
        "}",
    ]
    if plan.tls:
        cert, key = (directory / name for name in TLS_FILES)
        lines += ["", "# tls:// : put the server's certificate and key here before starting.",
                  "tls {", f"  cert_file: {_quoted(str(cert))}",
                  f"  key_file: {_quoted(str(key))}", "}"]
    lines += ["", "accounts {", "  COPYTRADE {", "    jetstream: enabled", "    users: ["]
    for user in plan.users:
        lines += _user_lines(user)
    lines += ["    ]", "  }", "}", ""]
    return "\n".join(lines)


def _user_lines(user: BusUser) -> list[str]:
    role = "the leader" if user.follower is None else f"the agent of follower {user.follower}"
    return [
        f"      # {role}",
        "      {",
        f"        user: {_quoted(user.name)}",
        f"        password: {_quoted(user.password.reveal())}",
        "        permissions: {",
        "          publish: { allow: [", *_grant_lines(user.publish), "          ] }",
        "          subscribe: { allow: [", *_grant_lines(user.subscribe), "          ] }",
        "        }",
        "      }",
    ]


def _grant_lines(grants: Grants) -> list[str]:
    width = max(len(_quoted(subject)) for subject, _why in grants)
    return [f"            {_quoted(subject):<{width}}  # {why}" for subject, why in grants]


def creds_text(user: BusUser) -> str:
    """The creds_file a [bus] table names (config/bus.py reads it)."""
    where = ("the leader's host" if user.follower is None
             else f"the host of follower {user.follower} only")
    lines = [
        f"# NATS user {user.name!r} for copytrade's [bus] creds_file "
        "(written by `copytrade bus init`).",
        f"# Secret: keep it 0600, on {where}.",
        f"user = {_quoted(user.name)}",
        f"password = {_quoted(user.password.reveal())}",
    ]
    if user.inbox_prefix:
        lines.append(f"inbox_prefix = {_quoted(user.inbox_prefix)}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    # JSON strings are valid in both the NATS configuration format and TOML for what is
    # written here (names, paths, URL-safe passwords).
    return json.dumps(text)


def write_bus_init(plan: BusInitPlan, *, force: bool = False) -> list[Path]:
    """Write every file (0600) into the plan's directory (0700); refuse to replace one
    without `force`. The paths written, in order."""
    texts = plan.files()
    targets = [plan.directory / name for name in texts]
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} already exists: not overwritten; pass --force to "
                          "replace every file (new passwords: each host needs its new creds "
                          "file), or --output DIR to write elsewhere")
    try:
        ensure_private_dir(plan.directory)
        ensure_private_dir(plan.directory / STORE_DIR)
        for path, text in zip(targets, texts.values(), strict=True):
            write_private_file(path, text)
    except OSError as exc:
        raise StoreError(f"cannot write into {plan.directory}: {exc.strerror or exc}") from None
    return targets
