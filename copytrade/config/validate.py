"""validate(): everything wrong with a loaded configuration that is knowable before
market open, as Problems, so `copytrade config validate` can show every mistake at once.

require_valid() is the same check for commands that go on to trade. It lives here, not
in tokens.py, because validate() itself asks tokens.py about each token.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from copytrade.config.bus import bus_problems
from copytrade.config.load import webhook_url_problem
from copytrade.config.model import (
    PRODUCTS,
    SEGMENTS,
    AccountConfig,
    Config,
    Egress,
    FollowerConfig,
    Problem,
    SimConfig,
    accounts,
    follower_where,
    served_elsewhere,
)
from copytrade.config.table import did_you_mean, key_path
from copytrade.config.tokens import resolve_tokens, token_problems
from copytrade.config.urls import host, is_loopback, safe_url, url_problem
from copytrade.errors import ConfigError
from copytrade.secret import Secret


def validate(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> list[Problem]:
    """Every problem found, errors and warnings, in file order. Reads no network."""
    problems: list[Problem] = []
    # Checks run one kind at a time; _file_order regroups their findings by table.
    problems += token_problems(config, environ, secrets_file)
    problems += _check_accounts_distinct(config)
    problems += _check_names_distinct(config)
    problems += _check_sim(config.sim)
    for where, account, _required in accounts(config):
        problems += _check_account(where, account, config)
    for index, follower in enumerate(config.followers):
        problems += _check_follower_lists(follower_where(index, follower), follower)
    if config.broker == "dhan":  # the emulator takes orders from any address
        problems += _check_egress_shared(config)
    problems += _check_settings(config)
    problems += _check_alerts(config, os.environ if environ is None else environ)
    problems += _check_enabled_followers(config)
    problems += bus_problems(config)
    return sorted(problems, key=_file_order)


def require_valid(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_file: Path | None = None,
) -> dict[str, Secret]:
    """validate(), raising the first error as a ConfigError; then the tokens."""
    errors = [p for p in validate(config, environ, secrets_file=secrets_file) if p.level == "error"]
    if errors:
        more = (
            f" (and {len(errors) - 1} more; run: copytrade config validate)"
            if len(errors) > 1
            else ""
        )
        raise ConfigError(f"{errors[0].where}: {errors[0].message}{more}")
    return resolve_tokens(config, environ, secrets_file=secrets_file)


def problem_counts(problems: Iterable[Problem]) -> Counter[str]:
    """How many errors and warnings: Counter({'error': 2, 'warning': 1})."""
    return Counter(problem.level for problem in problems)


def _file_order(problem: Problem) -> tuple[int, int]:
    """The secrets file, [sim], leader, each follower in turn, settings, alerts, then the
    whole list."""
    if problem.where.startswith("sim."):
        return (0, 1)
    if problem.where.startswith("alerts"):
        return (3, 1)
    if problem.where.startswith("bus"):
        return (3, 2)
    if problem.where.startswith("leader"):
        return (1, 0)
    follower = re.match(r"followers\[(\d+)\]", problem.where)
    if follower:
        return (2, int(follower.group(1)))
    if problem.where.startswith("settings"):
        return (3, 0)
    return (0, 0) if problem.where.endswith(".toml") else (4, 0)


def _error(where: str, message: str) -> Problem:
    return Problem("error", where, message)


def _warning(where: str, message: str) -> Problem:
    return Problem("warning", where, message)


def _check_accounts_distinct(config: Config) -> Iterator[Problem]:
    owner = {config.leader.client_id: "the leader"}
    for index, follower in enumerate(config.followers):
        client_id = follower.account.client_id
        if client_id in owner:
            yield _error(
                f"{follower_where(index, follower)}.client_id",
                f"client {client_id} is already {owner[client_id]}; "
                "each account can appear only once",
            )
        else:
            owner[client_id] = f"follower {follower.name!r}"


def _check_names_distinct(config: Config) -> Iterator[Problem]:
    first_index: dict[str, int] = {}
    for index, follower in enumerate(config.followers):
        key = follower.name.casefold()
        if key in first_index:
            yield _error(
                f"{follower_where(index, follower)}.name",
                f"duplicate name; followers[{first_index[key]}] is also called {follower.name!r}",
            )
        else:
            first_index[key] = index


def _check_sim(sim: SimConfig | None) -> Iterator[Problem]:
    """[sim]'s URLs, once: the accounts that inherit them are not checked again."""
    if sim is None:
        return
    yield from _check_url("sim.api_url", sim.api_url, ("https", "http"), warn_plain=False)
    yield from _check_url("sim.order_ws_url", sim.order_ws_url, ("wss", "ws"), warn_plain=False)
    yield from _check_url(
        "sim.instruments_url", sim.instruments_url, ("https", "http"), warn_plain=False
    )


def _check_account(where: str, account: AccountConfig, config: Config) -> Iterator[Problem]:
    # On the emulator tokens are fake: plain http to another host carries nothing secret.
    warn_plain, sim = config.broker == "dhan", config.sim
    if not (sim and account.api_url == sim.api_url):
        yield from _check_url(
            f"{where}.api_url", account.api_url, ("https", "http"), warn_plain=warn_plain
        )
    if not (sim and account.order_ws_url == sim.order_ws_url):
        yield from _check_url(
            f"{where}.order_ws_url", account.order_ws_url, ("wss", "ws"), warn_plain=warn_plain
        )
    yield from _check_egress(where, account.egress)
    leader = config.leader
    ours, theirs = host(account.api_url), host(leader.api_url)
    if account is not leader and ours and theirs and ours != theirs:
        yield _warning(
            f"{where}.api_url",
            f"talks to {ours} but the leader talks to {theirs}: mixing paper and live accounts?",
        )


def _check_url(
    where: str, url: str, schemes: tuple[str, str], *, warn_plain: bool = True
) -> Iterator[Problem]:
    """`schemes` is (secure, plain); plain is fine only for this machine (the emulator)."""
    secure, plain = schemes
    problem = url_problem(url)
    if problem:
        yield _error(where, problem)
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        yield _error(
            where, f"must be a {secure}:// (or {plain}://) URL with a host, not {safe_url(url)!r}"
        )
    elif warn_plain and parts.scheme == plain and not is_loopback(parts.hostname):
        yield _warning(
            where,
            f"{plain}:// to {parts.hostname} is unencrypted: the access "
            f"token travels in clear; use {secure}://",
        )


def _check_egress(where: str, egress: Egress) -> Iterator[Problem]:
    if egress.proxy and egress.source_address:
        yield _error(f"{where}.proxy", "set proxy or source_address, not both")
    if egress.proxy:
        # An http:// proxy is fine: HTTPS to Dhan is tunnelled through it, still encrypted.
        yield from _check_url(f"{where}.proxy", egress.proxy, ("https", "http"), warn_plain=False)
    if egress.source_address:
        try:
            ipaddress.ip_address(egress.source_address)
        except ValueError:
            yield _error(
                f"{where}.source_address",
                f"{egress.source_address!r} is not an IPv4 or IPv6 address",
            )


def _check_egress_shared(config: Config) -> Iterator[Problem]:
    """Dhan refuses orders from an IP that another user's account has whitelisted."""
    sending = [(index, f) for index, f in enumerate(config.followers)
               if f.enabled and not f.shadow and not served_elsewhere(config, f)]
    explicit: dict[Egress, str] = {}
    for index, follower in sending:
        egress = follower.account.egress
        if not (egress.proxy or egress.source_address):
            continue
        if egress in explicit:
            yield _error(
                follower_where(index, follower),
                f"same proxy/source_address as "
                f"{explicit[egress]}; Dhan accepts each IP for one account only",
            )
        else:
            explicit[egress] = follower_where(index, follower)
    implicit = [
        follower_where(index, f)
        for index, f in sending
        if not (f.account.egress.proxy or f.account.egress.source_address)
    ]
    if len(implicit) > 1:
        on_emulator = all(_on_this_machine(f.account.api_url) for _index, f in sending)
        yield _warning(
            "followers",
            f"{len(implicit)} followers send from this host's default "
            "address; Dhan accepts each whitelisted IP for one account only, so "
            "give each a proxy or source_address"
            + ('; paper trading on the emulator? set broker = "sim" at the top of the file'
               if on_emulator else ""),
        )


def _on_this_machine(url: str) -> bool:
    hostname = host(url)
    return hostname is not None and is_loopback(urlsplit(url).hostname or "")


def _check_follower_lists(where: str, follower: FollowerConfig) -> Iterator[Problem]:
    pairs = (
        ("segments", follower.allow_segments, follower.deny_segments, SEGMENTS),
        ("products", follower.allow_products, follower.deny_products, PRODUCTS),
        ("security_ids", follower.allow_security_ids, follower.deny_security_ids, None),
    )
    for kind, allow, deny, known in pairs:
        for key, values in ((f"allow_{kind}", allow), (f"deny_{kind}", deny)):
            yield from _check_names(f"{where}.{key}", values, known)
        for value in sorted(allow & deny):
            yield _error(f"{where}.deny_{kind}", f"{value} is in both allow_{kind} and deny_{kind}")


def _check_names(
    where: str, values: frozenset[str], known: frozenset[str] | None
) -> Iterator[Problem]:
    for value in sorted(values):
        if known is None:
            if not value.isdigit():
                yield _warning(
                    where,
                    f"{value!r} does not look like a Dhan security id "
                    "(digits, from the instrument list)",
                )
        elif value not in known:
            yield _error(where, f"unknown name {value!r}{did_you_mean(value, sorted(known))}")


def _check_settings(config: Config) -> Iterator[Problem]:
    settings, sim = config.settings, config.sim
    if not (sim and settings.instruments_url == sim.instruments_url):
        yield from _check_url(
            "settings.instruments_url",
            settings.instruments_url,
            ("https", "http"),
            warn_plain=config.broker == "dhan",
        )
    for security_id in settings.freeze_limits:
        if not security_id.isdigit():
            yield _warning(
                key_path("settings.freeze_limits", security_id),
                "does not look like a Dhan security id (digits)",
            )


def _check_alerts(config: Config, environ: Mapping[str, str]) -> Iterator[Problem]:
    """The webhook URL, from the file or its variable; never quoted (a bot token in it)."""
    alerts = config.alerts
    url = alerts.webhook_url
    where = "alerts.webhook_url"
    if alerts.webhook_url_env:
        where = "alerts.webhook_url_env"
        url = environ.get(alerts.webhook_url_env, "").strip()
        if not url:
            yield _warning(
                where,
                f"the environment variable {alerts.webhook_url_env} is not set: "
                "follow would send no alerts",
            )
            return
        problem = webhook_url_problem(url)
        if problem:
            yield _error(where, f"the URL in {alerts.webhook_url_env} {problem}")
            return
    if not url:
        return
    parts = urlsplit(url)
    if config.broker == "dhan" and parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        yield _warning(
            where,
            f"http:// to {parts.hostname} is unencrypted: whatever the URL carries (a bot "
            "token) and every alert travel in clear; use https://",
        )


def _check_enabled_followers(config: Config) -> Iterator[Problem]:
    enabled = config.enabled_followers
    if not enabled:
        yield _error("followers", "no enabled followers: nothing would be mirrored")
    elif all(follower.shadow for follower in enabled):
        yield _warning(
            "followers",
            "every enabled follower is in shadow mode: orders are "
            "computed and recorded but none is sent",
        )
