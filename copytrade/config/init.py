"""`copytrade config init`'s pure part: the accounts asked for, checked, and the text of
the copytrade.toml that holds them. Reads and writes nothing; the CLI asks and writes.

A paper-trading setup (`--sim`) is complete by itself: broker = "sim" points every account
at the emulator (instrument list included), alerts go to the emulator's webhook receiver,
and each account gets a stand-in token (the emulator accepts any non-empty one).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from copytrade.config.load import CLIENT_ID, FOLLOWER_NAME
from copytrade.config.model import (
    DEFAULT_SIM_API_URL,
    DEFAULT_SIM_INSTRUMENTS_URL,
    DEFAULT_SIM_ORDER_WS_URL,
    RANGES,
)
from copytrade.config.urls import url_problem
from copytrade.errors import UsageError

SIM_LEADER = "1000000001"
MAX_FOLLOWERS = 50  # a bound for the prompt loop; far beyond a family setup


@dataclass(frozen=True)
class FollowerSpec:
    name: str
    client_id: str
    multiplier: float = 1.0


# The emulator's followers when none are named: one at the leader's size, one at twice it.
SIM_FOLLOWERS = (
    FollowerSpec("family-1", "1000000002", 1.0),
    FollowerSpec("family-2", "1000000003", 2.0),
)


@dataclass(frozen=True)
class SimUrls:
    """Where a running `copytrade sim` serves, derived from its REST URL."""

    api_url: str
    order_ws_url: str
    instruments_url: str
    alerts_url: str  # the emulator's webhook receiver (POST /_sim/alerts)

    @property
    def is_default(self) -> bool:
        """`copytrade sim` on its default ports: broker = "sim" needs no [sim] table."""
        return (self.api_url, self.order_ws_url, self.instruments_url) == (
            DEFAULT_SIM_API_URL,
            DEFAULT_SIM_ORDER_WS_URL,
            DEFAULT_SIM_INSTRUMENTS_URL,
        )


def sim_urls(rest_url: str, ws_url: str | None = None) -> SimUrls:
    """From the URLs `copytrade sim` prints (`REST http://HOST:PORT/v2`, `WS ws://...`).

    The REST URL may leave out /v2. Without a WS URL the emulator's default WS port on the
    REST URL's host is assumed.
    """
    rest = rest_url.strip().rstrip("/")
    hostname, path = _http_parts(rest)
    if path not in ("", "/v2") and not path.endswith("/v2"):
        raise UsageError(
            f"--sim: {rest!r} is not the emulator's REST URL; give it as `copytrade sim` "
            f"prints it, e.g. {DEFAULT_SIM_API_URL}"
        )
    base = rest.removesuffix("/v2")
    if ws_url is None:
        default_port = urlsplit(DEFAULT_SIM_ORDER_WS_URL).port
        ws = f"ws://{_bracketed(hostname)}:{default_port}"
    else:
        ws = _checked_ws(ws_url.strip().rstrip("/"))
    return SimUrls(
        api_url=f"{base}/v2",
        order_ws_url=ws,
        instruments_url=f"{base}/api-data/api-scrip-master.csv",
        alerts_url=f"{base}/_sim/alerts",
    )


def _http_parts(url: str) -> tuple[str, str]:
    problem = url_problem(url)
    parts = urlsplit(url) if problem is None else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--sim: expected the emulator's REST URL (http://HOST:PORT/v2, as `copytrade "
            f"sim` prints it), not {url!r}" + (f": {problem}" if problem else "")
        )
    return parts.hostname, parts.path


def _checked_ws(url: str) -> str:
    problem = url_problem(url)
    parts = urlsplit(url) if problem is None else None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(
            f"--sim-ws: expected the emulator's order-stream URL (ws://HOST:PORT, as "
            f"`copytrade sim` prints it), not {url!r}" + (f": {problem}" if problem else "")
        )
    return url


def _bracketed(hostname: str) -> str:
    return f"[{hostname}]" if ":" in hostname else hostname


# --- accounts from flags or answers -------------------------------------------------------


def client_id_problem(text: str) -> str | None:
    if CLIENT_ID.fullmatch(text):
        return None
    return "a Dhan client id is up to 32 letters, digits, '_' or '-'"


def name_problem(text: str) -> str | None:
    if FOLLOWER_NAME.fullmatch(text):
        return None
    return (
        "a follower name is 1-32 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit"
    )


def multiplier_problem(value: float) -> str | None:
    low, high = RANGES["multiplier"]
    return None if low <= value <= high else f"a multiplier is from {low:g} to {high:g}"


def parse_follower(text: str) -> FollowerSpec:
    """`--follower NAME=CLIENT_ID` (multiplier 1: edit the file for other sizing)."""
    name, equals, client_id = text.partition("=")
    name, client_id = name.strip(), client_id.strip()
    if not equals:
        raise UsageError(f"--follower {text!r}: write NAME=CLIENT_ID, e.g. family-1=1000000002")
    problem = name_problem(name) or client_id_problem(client_id)
    if problem:
        raise UsageError(f"--follower {text!r}: {problem}")
    return FollowerSpec(name, client_id)


def check_accounts(leader: str, followers: tuple[FollowerSpec, ...]) -> None:
    """Each account once, each name once (ignoring case), as config validate requires."""
    if not followers:
        raise UsageError("no follower: give at least one --follower NAME=CLIENT_ID")
    seen_ids, seen_names = {leader: "the leader"}, set()
    for follower in followers:
        if follower.client_id in seen_ids:
            raise UsageError(
                f"client {follower.client_id} is already {seen_ids[follower.client_id]}; "
                "each account can appear only once"
            )
        if follower.name.casefold() in seen_names:
            raise UsageError(f"two followers are called {follower.name!r}; names must differ")
        seen_ids[follower.client_id] = f"follower {follower.name!r}"
        seen_names.add(follower.name.casefold())


def sim_token(client_id: str) -> str:
    """A stand-in token for the emulator (it accepts any); shaped like a token so that
    config validate passes, and plainly not a Dhan one."""
    return f"paper-trading-sim-token-{client_id}"


# --- the file -----------------------------------------------------------------------------


def config_text(
    leader: str, followers: tuple[FollowerSpec, ...], sim: SimUrls | None = None
) -> str:
    """copytrade.toml for these accounts: on the emulator when `sim` is given, else Dhan."""
    lines = _header(sim)
    if sim is not None:
        lines += _sim_lines(sim)
    lines += ["", "[leader]", f"client_id = {_quoted(leader)}"]
    for follower in followers:
        lines += [
            "",
            "[[followers]]",
            f"name = {_quoted(follower.name)}",
            f"client_id = {_quoted(follower.client_id)}",
            f"multiplier = {follower.multiplier!r}",
        ]
        if sim is None:
            lines += _egress_hint()
    lines += [""] + (_sim_alerts(sim) if sim is not None else _alerts_hint())
    return "\n".join(lines) + "\n"


def _header(sim: SimUrls | None) -> list[str]:
    target = "paper trading on the emulator" if sim else "your Dhan accounts"
    return [
        f"# copytrade.toml for {target}, written by `copytrade config init`.",
        "# Tokens are not kept here: `copytrade token set ACCOUNT` puts them in secrets.toml.",
        "# `copytrade config show` prints every setting with its default;",
        "# `copytrade config validate` checks this file. Sizing per follower: multiplier",
        "# (the leader's lots times it), fixed_lots = N, or capital_ratio = true.",
        f"broker = {_quoted('sim' if sim else 'dhan')}",
    ]


def _sim_lines(sim: SimUrls) -> list[str]:
    table = [
        "[sim]",
        f"api_url = {_quoted(sim.api_url)}",
        f"order_ws_url = {_quoted(sim.order_ws_url)}",
        f"instruments_url = {_quoted(sim.instruments_url)}",
    ]
    if not sim.is_default:
        return ["", "# Where the emulator serves (what `copytrade sim` printed).", *table]
    return [
        "",
        "# The emulator on its default ports; started elsewhere? uncomment and edit:",
        *(f"# {line}" for line in table),
    ]


def _egress_hint() -> list[str]:
    return [
        "# Dhan takes orders only from the IP whitelisted for the account, one account per",
        '# IP: source_address = "203.0.113.21" or proxy = "http://proxy.example:3128"',
    ]


def _sim_alerts(sim: SimUrls) -> list[str]:
    return [
        "# Alerts go to the emulator, which prints each one (`alert: ...`).",
        "[alerts]",
        f"webhook_url = {_quoted(sim.alerts_url)}",
    ]


def _alerts_hint() -> list[str]:
    return [
        "# Alerts (rejections, divergences, tokens, follow stopping) as a JSON POST:",
        "# [alerts]",
        '# webhook_url_env = "COPYTRADE_WEBHOOK_URL"  # the variable holding the URL',
        '# fields = { chat_id = "-1001234567890" }    # e.g. for Telegram\'s sendMessage',
    ]


def _quoted(text: str) -> str:
    """A TOML basic string; the values here are checked names, ids and URLs."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
