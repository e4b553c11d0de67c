"""Tokens that never lapse while follow runs (issue 9).

A `TokenKeeper` round, run by follow's supervised token loop every few seconds:

- secrets.toml changed (its mtime or size), or SIGHUP asked for it: the file is read
  again and each account whose token there differs from the one in use is switched to
  it (follow then resumes that account if it had stopped on a refused token);
- each account's token validity is read (`GET /v2/profile`) at start and every hour; a
  token within `renew_before` of its end is renewed (`GET /v2/RenewToken`): the new one
  is written to secrets.toml (when it came from there) and switched to at once;
- a renewal that fails is tried again every `retry_every`, and within WARN_BEFORE of the
  end a warning goes to the live table, the log and the audit.

Nothing here knows Dhan's wire format or the configuration: the composition root hands
in how to reach the token endpoints, how to read and write the secrets file, and what a
switch does (`TokenWiring`, `on_switch`). Tokens stay Secret throughout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytz

from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.errors import ConfigError
from copytrade.redact import redact
from copytrade.secret import Secret

log = logging.getLogger(__name__)
IST = pytz.timezone("Asia/Kolkata")

CHECK_EVERY = timedelta(hours=1)  # the issue: validity read at start and every hour
RETRY_EVERY = timedelta(minutes=1)  # a failed read or renewal is tried again this soon
WARN_BEFORE = timedelta(minutes=30)  # renewal still failing this close to the end: warn
POLL_SECONDS = 1.0  # how often the loop looks at secrets.toml and the schedule


class TokenEndpoints(Protocol):
    """dhan/token_api.TokenApi as the keeper uses it."""

    def profile(self) -> Outcome: ...

    def renew(self) -> Outcome: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TokenWiring:
    """What the composition root knows of the tokens, for follow's token loop."""

    tokens: Mapping[str, Secret]  # client id -> the token in use at start
    sources: Mapping[str, str]  # client id -> "env" or "secrets file"
    env_names: Mapping[str, str]  # client id -> its access_token_env, for messages
    roles: Mapping[str, str]  # client id -> "leader" / "follower f1" (for messages)
    secrets_file: Path
    endpoints: Callable[[str, Secret], TokenEndpoints]  # (client id, token) -> its API
    read_file: Callable[[Path], Mapping[str, Secret]]  # secrets.toml's [tokens]
    write_file: Callable[[Path, str, Secret], None]  # one token, atomically, 0600
    renew: bool = True
    renew_before: timedelta = timedelta(minutes=60)


@dataclass
class TokenState:
    client_id: str
    token: Secret = field(repr=False)
    source: str
    valid_until: datetime | None = None  # UTC, as the profile last said
    next_check: datetime | None = None  # None: now
    warned: bool = False  # the expiry warning is out (cleared by a renewal or a reload)
    refused: bool = False  # the last read met DH-901


def ist(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%d/%m/%Y %H:%M IST")


def renewal_due(valid_until: datetime, now: datetime, renew_before: timedelta) -> bool:
    """Renew once the token has `renew_before` or less left."""
    return valid_until - now <= renew_before


def next_check_at(valid_until: datetime, now: datetime, due_before: timedelta,
                  check_every: timedelta = CHECK_EVERY) -> datetime:
    """The hourly read, or the moment `due_before` the end (renewal, or the warning when
    renewal is off) if that comes first. A point already passed means hourly reads again:
    it must not turn every one-second round of the loop into a read of Dhan's profile."""
    due = valid_until - due_before
    if due <= now:
        return now + check_every
    return min(now + check_every, due)


SwitchFn = Callable[[str, Secret, str], None]  # (client id, new token, why)
NoticeFn = Callable[[str, str, str], None]  # (client id, audit kind, message)


class TokenKeeper:
    def __init__(self, wiring: TokenWiring, *, on_switch: SwitchFn, on_notice: NoticeFn,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 check_every: timedelta = CHECK_EVERY,
                 retry_every: timedelta = RETRY_EVERY) -> None:
        self.wiring = wiring
        self.on_switch = on_switch
        self.on_notice = on_notice  # audit + log; a warning also goes to `warnings`
        self.now = now
        self.check_every = check_every
        self.retry_every = retry_every
        self.states = {cid: TokenState(cid, token, wiring.sources.get(cid, "env"))
                       for cid, token in wiring.tokens.items()}
        self.warnings: dict[str, str] = {}  # role -> text, for the live table
        self._reload = threading.Event()
        self._file_seen = self._file_stamp()

    # ---- the loop's round ------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: read secrets.toml again at the next round (safe from a signal handler)."""
        self._reload.set()

    def round(self) -> None:
        """One pass: reload if asked or changed, then every check that is due."""
        stamp = self._file_stamp()
        if self._reload.is_set() or stamp != self._file_seen:
            self._reload.clear()
            self._file_seen = stamp
            self.reload()
        for state in self.states.values():
            if state.next_check is None or self.now() >= state.next_check:
                self.check(state)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            info = self.wiring.secrets_file.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    # ---- reload ----------------------------------------------------------------------------

    def reload(self) -> list[str]:
        """Switch every account whose token in secrets.toml changed; the client ids."""
        try:
            tokens = self.wiring.read_file(self.wiring.secrets_file)
        except ConfigError as exc:  # kept as it is: what runs now goes on running
            self.on_notice("", "secrets_unreadable", f"secrets.toml not reloaded: "
                           f"{exc.message}; the tokens in use are kept")
            return []
        switched = []
        for state in self.states.values():
            new = tokens.get(state.client_id)
            if state.source != "secrets file" or new is None or new == state.token:
                continue  # an environment variable wins over the file, as at start
            self._switch(state, new, "reloaded from secrets.toml")
            switched.append(state.client_id)
        return switched

    def _switch(self, state: TokenState, token: Secret, why: str) -> None:
        state.token, state.valid_until, state.next_check = token, None, None
        state.warned = state.refused = False
        self.warnings.pop(self._role(state), None)
        self.on_switch(state.client_id, token, why)

    # ---- validity and renewal ----------------------------------------------------------------

    def check(self, state: TokenState) -> None:
        now = self.now()
        endpoints = self.wiring.endpoints(state.client_id, state.token)
        try:
            outcome = endpoints.profile()
            if outcome.ok:
                state.refused = False
                state.valid_until = outcome.data.valid_until
                if self.wiring.renew and renewal_due(state.valid_until, now,
                                                     self.wiring.renew_before):
                    self._renew(state, endpoints, now)
                    return
                # Renewal off: the next point that matters is the warning's.
                due_before = self.wiring.renew_before if self.wiring.renew else WARN_BEFORE
                state.next_check = next_check_at(state.valid_until, now, due_before,
                                                 self.check_every)
                self._warn_if_close(state, now, "renewal is off (renew_tokens = false)"
                                    if not self.wiring.renew else "")
                return
        finally:
            endpoints.close()
        self._read_failed(state, outcome, now)

    def _read_failed(self, state: TokenState, outcome: Outcome, now: datetime) -> None:
        state.next_check = now + self.retry_every
        if outcome.kind is OutcomeKind.AUTH:
            if not state.refused:  # once: the account's own halt says the rest
                state.refused = True
                self.on_notice(state.client_id, "token_refused", f"the token of "
                               f"{self._role(state)} is refused ({outcome.code or 'DH-901'}): "
                               f"save a new one with `copytrade token set {state.client_id}`; "
                               "follow picks it up without a restart")
            return
        log.warning("token validity of %s could not be read: %s", self._role(state),
                    outcome.describe())
        self._warn_if_close(state, now, f"its validity could not be read "
                            f"({outcome.describe()})")

    def _renew(self, state: TokenState, endpoints: TokenEndpoints, now: datetime) -> None:
        outcome = endpoints.renew()
        if not outcome.ok:
            state.next_check = now + self.retry_every
            log.warning("renewing the token of %s failed: %s", self._role(state),
                        outcome.describe())
            self._warn_if_close(state, now, f"renewal failed ({outcome.describe()}); "
                                "retrying")
            return
        renewal = outcome.data
        where = self._persist(state, renewal.token)
        until = renewal.valid_until
        self._switch(state, renewal.token, "renewed")
        state.valid_until = until
        # Read back with the new token at once: the profile confirms it and its validity.
        state.next_check = now if until is None else next_check_at(
            until, now, self.wiring.renew_before, self.check_every)
        self.on_notice(state.client_id, "token_renewed", f"token of {self._role(state)} "
                       f"renewed" + (f", valid until {ist(until)}" if until else "") +
                       f"; {where}")

    def _persist(self, state: TokenState, token: Secret) -> str:
        """Write a renewed token where the old one came from, when we can: what to say."""
        if state.source != "secrets file":
            name = self.wiring.env_names.get(state.client_id, "its environment variable")
            self.on_notice(state.client_id, "token_not_persisted", f"the renewed token of "
                           f"{self._role(state)} is used in memory only: it came from "
                           f"{name}, which copytrade cannot change; a restart would use "
                           "the old token until it expires")
            return "kept in memory"
        try:
            self.wiring.write_file(self.wiring.secrets_file, state.client_id, token)
        except (OSError, ConfigError) as exc:
            self.on_notice(state.client_id, "token_not_persisted", f"the renewed token of "
                           f"{self._role(state)} could not be written to secrets.toml "
                           f"({redact(str(exc))[:200]}): used in memory only")
            return "kept in memory"
        self._file_seen = self._file_stamp()  # our own write is not a change to reload
        return "written to secrets.toml"

    def _warn_if_close(self, state: TokenState, now: datetime, why: str) -> None:
        if state.valid_until is None or state.warned or not why:
            return
        left = state.valid_until - now
        if left > WARN_BEFORE:
            return
        state.warned = True
        minutes = max(int(left.total_seconds() // 60), 0)
        text = (f"token of {self._role(state)} expires at {ist(state.valid_until)} "
                f"(in {minutes} min): {why}")
        self.warnings[self._role(state)] = text
        self.on_notice(state.client_id, "token_expiring", text)

    def _role(self, state: TokenState) -> str:
        return self.wiring.roles.get(state.client_id, f"client {state.client_id}")
