"""[bus]: how leader order events reach followers served on other hosts (issue 12).

`mode = "embedded"` (the default) is one process on one host, as always. With
`mode = "nats"` the leader publishes every leader order event to a NATS JetStream
stream, and each follower marked `remote = true` is served by an agent on its own
host, reading its own durable consumer. This module reads the table, checks it for
`config validate`, names the streams, subjects and consumers both sides use, and
reads the credentials file `copytrade bus init` writes. Nothing here opens a
connection: connect_options() only gathers what nats.connect() needs.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

from copytrade.config.table import Table, key_path, unknown_key_message
from copytrade.config.urls import is_loopback, safe_url, url_problem
from copytrade.errors import ConfigError, UsageError
from copytrade.home import check_private_file
from copytrade.secret import Secret

if TYPE_CHECKING:
    from copytrade.config.model import Config, Problem

BusMode = Literal["embedded", "nats"]
BusRole = Literal["leader", "agent"]
BUS_MODES: tuple[str, ...] = get_args(BusMode)
BUS_ROLES: tuple[str, ...] = get_args(BusRole)
BUS_SCHEMES = ("tls", "nats")  # (secure, plain)

DEFAULT_STREAM = "COPYTRADE"
DEFAULT_SUBJECT_PREFIX = "copytrade"

# JetStream names may not hold '.', '*', '>', spaces or path separators; kept plain.
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Subject tokens: no wildcards, no empty token.
SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){0,3}")
MAX_SUBJECT_PREFIX = 64
# A follower served by an agent names a consumer and a subject token: no '.' in it.
AGENT_FOLLOWER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
# A NATS user name as bus init writes it or a person may choose: no space, no wildcard.
BUS_USER = re.compile(r"[A-Za-z0-9_-]{1,64}")
NATS_CREDS_MARK = "-----BEGIN NATS USER JWT-----"
MAX_CREDS_BYTES = 64 * 1024  # a creds file is a few hundred bytes


@dataclass(frozen=True)
class BusConfig:
    mode: BusMode = "embedded"
    url: str | None = None  # nats:// or tls://, required with "nats"
    role: BusRole | None = None  # required with "nats"
    follower: str | None = None  # the one follower an agent serves
    creds_file: Path | None = None  # read by read_bus_credentials(); 0600
    ca_file: Path | None = None  # CA bundle for a tls:// server
    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX

    @property
    def is_nats(self) -> bool:
        return self.mode == "nats"

    @property
    def is_leader(self) -> bool:
        return self.is_nats and self.role == "leader"

    @property
    def is_agent(self) -> bool:
        return self.is_nats and self.role == "agent"

    # --- the names both sides use (issue 12 contracts) -------------------------------

    @property
    def results_stream(self) -> str:
        return f"{self.stream}_RESULTS"

    @property
    def leader_subjects(self) -> str:
        """What the leader's stream captures: `P.leader.>`."""
        return f"{self.subject_prefix}.leader.>"

    @property
    def results_subjects(self) -> str:
        return f"{self.subject_prefix}.results.>"

    def leader_subject(self, trading_date: str, order_id: str) -> str:
        """`P.leader.<YYYYMMDD>.<leader order id>` for a trading date written YYYY-MM-DD."""
        return f"{self.subject_prefix}.leader.{trading_date.replace('-', '')}.{order_id}"

    def results_subject(self, follower: str) -> str:
        return f"{self.subject_prefix}.results.{follower}"


def consumer_name(follower: str) -> str:
    """The durable pull consumer an agent reads: `agent-<follower name>`."""
    return f"agent-{follower}"


BUS_KEYS = tuple(key.name for key in fields(BusConfig))


# --- reading [bus] --------------------------------------------------------------------------


def parse_bus(raw: object, source: Path | None) -> BusConfig:
    """[bus] as written: its structure checked here, everything else in bus_problems()."""
    table = Table(raw, "bus", BUS_KEYS)
    mode = table.choice("mode", BUS_MODES, "embedded")
    if mode == "nats":
        for key, hint in (("url", "e.g. nats://127.0.0.1:4222"), ("role", '"leader" or "agent"')):
            if key not in table.data:
                raise table.invalid(key, f'missing (required with mode = "nats"): {hint}')
    url = table.string("url", None)
    role = table.choice("role", BUS_ROLES, "leader") if "role" in table.data else None
    follower = _follower(table, role)
    stream = table.string("stream", DEFAULT_STREAM)
    if not STREAM_NAME.fullmatch(stream):
        raise table.invalid("stream", "must be 1-32 letters, digits, '_' or '-'")
    prefix = table.string("subject_prefix", DEFAULT_SUBJECT_PREFIX)
    if len(prefix) > MAX_SUBJECT_PREFIX or not SUBJECT_PREFIX.fullmatch(prefix):
        raise table.invalid(
            "subject_prefix", "must be 1-4 words of letters, digits, '_' or '-' joined by '.' "
            f"(no wildcards), at most {MAX_SUBJECT_PREFIX} characters")
    return BusConfig(mode=mode, url=url, role=role, follower=follower,
                     creds_file=_path(table, "creds_file", source),
                     ca_file=_path(table, "ca_file", source),
                     stream=stream, subject_prefix=prefix)


def _follower(table: Table, role: str | None) -> str | None:
    if role == "leader" and "follower" in table.data:
        raise table.invalid("follower", 'only an agent names its follower; the leader serves '
                            'every follower (mark those served by agents remote = true)')
    follower = table.string("follower", ... if role == "agent" else None)
    if follower is not None and not AGENT_FOLLOWER_NAME.fullmatch(follower):
        raise table.invalid("follower", "must be the name of a follower served by an agent: "
                            "1-32 letters, digits, '_' or '-' (no '.')")
    return follower


def _path(table: Table, key: str, source: Path | None) -> Path | None:
    """A file path: `~` expanded; a relative one is relative to copytrade.toml's directory."""
    text = table.string(key, None)
    if text is None:
        return None
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise table.invalid(key, "must be a file path without control characters")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~name of no such user, or no home directory
        raise table.invalid(key, "starts with a ~ that names no home directory") from None
    if not path.is_absolute() and source is not None:
        path = Path(source).parent / path
    return path


# --- config validate's share ---------------------------------------------------------------


def bus_problems(config: Config) -> Iterator[Problem]:
    """[bus] and the followers' `remote`, checked against each other and the files named."""
    bus = config.bus
    if not bus.is_nats:
        yield from _embedded_problems(config)
        return
    yield from _url_problems(bus)
    yield from _file_problems(bus)
    if bus.role == "leader":
        yield from _leader_problems(config)
    else:
        yield from _agent_problems(config)


def _problem(level: Literal["error", "warning"], where: str, message: str) -> Problem:
    from copytrade.config.model import Problem

    return Problem(level, where, message)


def _embedded_problems(config: Config) -> Iterator[Problem]:
    bus, default = config.bus, BusConfig()
    for key in BUS_KEYS[1:]:
        if getattr(bus, key) != getattr(default, key):
            yield _problem("warning", f"bus.{key}", 'read only with mode = "nats"; ignored')
    for index, follower in enumerate(config.followers):
        if follower.remote:
            yield _problem("error", f"{_where(index, follower.name)}.remote",
                           'remote = true needs [bus] mode = "nats" with role = "leader"; '
                           "set remote = false to mirror it from this host (its token is "
                           "then needed here)")


def _url_problems(bus: BusConfig) -> Iterator[Problem]:
    url = bus.url or ""
    problem = bus_url_problem(url)
    if problem:
        yield _problem("error", "bus.url", problem)
        return
    hostname = urlsplit(url).hostname or ""
    if urlsplit(url).scheme == "nats" and not is_loopback(hostname):
        yield _problem("warning", "bus.url", f"nats:// to {hostname} is unencrypted: the "
                       "NATS password and every leader order travel in clear; use tls://")


def bus_url_problem(url: str) -> str | None:
    """What makes `url` unusable as the NATS server's address; never quotes a password."""
    problem = url_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.scheme not in BUS_SCHEMES or not parts.hostname:
        return ("must be a tls:// (or nats://) URL with a host, e.g. "
                f"nats://127.0.0.1:4222, not {safe_url(url)!r}")
    if parts.username is not None or parts.password is not None:
        return ("holds a user or password: put them in the file named by creds_file "
                "(copytrade bus init writes one), not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be scheme://host:port only, without a path or query"
    return None


def _file_problems(bus: BusConfig) -> Iterator[Problem]:
    if bus.creds_file is None:
        host = urlsplit(bus.url or "").hostname or ""
        if not is_loopback(host):
            yield _problem("warning", "bus.creds_file", "not set: the server is reached "
                           "without a user; `copytrade bus init` writes one file per user")
    else:
        try:
            read_bus_credentials(bus.creds_file)
        except ConfigError as exc:
            yield _problem("error", "bus.creds_file", exc.message)
    if bus.ca_file is not None:
        if not bus.ca_file.is_file():
            yield _problem("error", "bus.ca_file", f"no file at {bus.ca_file}")
        elif urlsplit(bus.url or "").scheme != "tls":
            yield _problem("warning", "bus.ca_file", "read only with a tls:// url; ignored")


def _leader_problems(config: Config) -> Iterator[Problem]:
    remote = [(index, f) for index, f in enumerate(config.followers) if f.remote]
    for index, follower in remote:
        if not AGENT_FOLLOWER_NAME.fullmatch(follower.name):
            yield _problem("error", f"{_where(index, follower.name)}.name",
                           "a follower served by an agent names its NATS consumer and "
                           "subject: use only letters, digits, '_' or '-' (no '.')")
    if not any(f.enabled for _index, f in remote):
        yield _problem("warning", "bus.role", "no enabled follower has remote = true: "
                       "every follower is mirrored from this host, no agent is fed")


def _agent_problems(config: Config) -> Iterator[Problem]:
    name = config.bus.follower
    own = [f for f in config.followers if f.name == name]
    if not own:
        yield _problem("error", "bus.follower", f"no [[followers]] table named {name!r}: an "
                       "agent's configuration holds the one follower it serves")
    elif not own[0].enabled:
        yield _problem("error", "bus.follower", f"follower {name!r} is disabled: "
                       "this agent would serve nothing")
    elif own[0].sizing.mode == "capital_ratio":
        yield _problem("error", f"{_where(config.followers.index(own[0]), name)}.sizing",
                       "capital_ratio needs the leader's funds, which an agent cannot read: "
                       "use multiplier or fixed_lots")
    for index, follower in enumerate(config.followers):
        where = _where(index, follower.name)
        if follower.name != name:
            yield _problem("error", where, f"an agent serves only its own follower "
                           f"(bus.follower = {name!r}): remove this one from this host")
        elif follower.remote:
            yield _problem("warning", f"{where}.remote",
                           "read only by the leader; an agent serves its follower itself")


def _where(index: int, name: str) -> str:
    return f"followers[{index}] ({name})"


# --- the credentials file ------------------------------------------------------------------


@dataclass(frozen=True)
class BusCredentials:
    """Who connects to the server: a user and password (what bus init writes), or a
    NATS-issued .creds file (JWT + nkey seed) handed to the client as it is."""

    user: str | None = None
    password: Secret | None = None
    inbox_prefix: str | None = None  # replies come under this prefix (the server allows it)
    nats_creds: Path | None = None


_CREDS_KEYS = ("user", "password", "inbox_prefix")


def read_bus_credentials(path: Path) -> BusCredentials:
    """The creds_file: TOML `user` / `password` / optional `inbox_prefix` (as written by
    `copytrade bus init`), one line `user:password`, or a NATS .creds file. Refused unless
    private (0600) like secrets.toml; no message quotes the password."""
    path = Path(path)
    check_private_file(path)  # also: it exists
    if path.is_file() and path.stat().st_size > MAX_CREDS_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes: not a credentials file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {reason}") from None
    if NATS_CREDS_MARK in text:
        return BusCredentials(nats_creds=path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and ":" in lines[0] and "=" not in lines[0]:
        user, _colon, password = lines[0].partition(":")
        return _credentials(path, {"user": user, "password": password})
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"{path}: not a credentials file: write user = \"NAME\" and "
                          'password = "..." (TOML), or one line user:password') from None
    return _credentials(path, data)


def _credentials(path: Path, data: dict[str, Any]) -> BusCredentials:
    for key in data:
        if key not in _CREDS_KEYS:
            raise ConfigError(f"{path}: {key_path('', key)}: "
                              f"{unknown_key_message(key, _CREDS_KEYS)}")
    user, password = data.get("user"), data.get("password")
    if not isinstance(user, str) or not BUS_USER.fullmatch(user):
        raise ConfigError(f"{path}: user: must be 1-64 letters, digits, '_' or '-'")
    if not isinstance(password, str) or not password:
        raise ConfigError(f"{path}: password: missing or not a string")
    if any(not "!" <= char <= "~" for char in password):
        raise ConfigError(f"{path}: password: must be printable ASCII without spaces "
                          "(it is not shown here)")
    prefix = data.get("inbox_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not STREAM_NAME.fullmatch(prefix)):
        raise ConfigError(f"{path}: inbox_prefix: must be letters, digits, '_' or '-'")
    return BusCredentials(user=user, password=Secret(password), inbox_prefix=prefix)


def connect_options(bus: BusConfig) -> dict[str, Any]:
    """Keyword arguments for `nats.connect()` from [bus]: the server, the credentials read
    from creds_file now, TLS with ca_file. The password is in it: never print the result."""
    if bus.url is None:
        raise ConfigError('bus.url: missing (required with mode = "nats")')
    options: dict[str, Any] = {"servers": [bus.url]}
    if bus.creds_file is not None:
        creds = read_bus_credentials(bus.creds_file)
        if creds.nats_creds is not None:
            options["user_credentials"] = str(creds.nats_creds)
        else:
            options["user"] = creds.user
            options["password"] = creds.password.reveal() if creds.password else None
        if creds.inbox_prefix:
            options["inbox_prefix"] = creds.inbox_prefix
    if bus.ca_file is not None and urlsplit(bus.url).scheme == "tls":
        import ssl

        options["tls"] = ssl.create_default_context(cafile=str(bus.ca_file))
    return options


def refuse_on_agent(bus: BusConfig, command: str) -> None:
    """A command that reads the leader's account, run on an agent (which has no leader
    token): say what to do instead, in one line (exit 2)."""
    if bus.is_agent:
        raise UsageError(f"{command} reads the leader's account, which an agent cannot: on an "
                         "agent, restart follow (its consumer delivers every event not yet "
                         "acknowledged); or run it on the leader's host")


def refuse_served_elsewhere(config: Config, name: str) -> None:
    """A command for one follower, named for a follower another host mirrors (its agent
    on a leader's host): say where to run it, instead of "unknown" or a silent nothing."""
    from copytrade.config.model import served_elsewhere  # model imports this module

    for follower in config.followers:
        if follower.name.lower() == name.lower() and served_elsewhere(config, follower):
            raise UsageError(f"follower {follower.name} is mirrored from another host "
                             "([bus] mode = \"nats\", remote = true): run this command there")
