"""Token validity, renewal and reload (engine/tokens.py, dhan/token_api.py, config/tokens.py):
pure parts with an injected clock, the keeper against fake endpoints, the atomic write."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from copytrade.config.tokens import read_secrets_file, store_token
from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.dhan.token_api import Renewal, Validity, parse_validity, usable_token
from copytrade.engine.tokens import (
    TokenKeeper,
    TokenWiring,
    next_check_at,
    renewal_due,
)
from copytrade.secret import Secret

CID = "1000000002"
OLD = "old-token-unit-3b9e7d1c"
NEW = "new-token-unit-55aa0f2e"
START = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)  # 10:00 IST


def test_validity_is_read_as_ist() -> None:
    assert parse_validity("25/11/2026 10:00") == START
    assert parse_validity("25/11/2026 10:00:30") == START + timedelta(seconds=30)
    assert parse_validity("2026-11-25T10:00:00") == START
    for bad in ("", "31/02/2026 10:00", "soon", None, 5):
        assert parse_validity(bad) is None


def test_usable_token_refuses_what_cannot_go_in_a_header() -> None:
    assert usable_token(f"  {NEW} ") == NEW
    assert usable_token("short") is None
    assert usable_token("has a space in it, long enough") is None
    assert usable_token(None) is None


def test_renewal_window_with_an_injected_clock() -> None:
    before = timedelta(minutes=60)
    until = START + timedelta(hours=3)
    assert not renewal_due(until, START, before)
    assert renewal_due(until, START + timedelta(hours=2), before)
    # the hourly read, or the moment renewal falls due if sooner
    assert next_check_at(until, START, before) == START + timedelta(hours=1)
    assert next_check_at(until, START + timedelta(hours=1, minutes=30), before) == (
        START + timedelta(hours=2))


def test_store_token_is_atomic_private_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(f'# mine\n[tokens]\n"{CID}" = "{OLD}"\n"1000000003" = "other-token-1234567"\n')
    path.chmod(0o600)
    store_token(path, CID, Secret(NEW))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "# mine" in text and OLD not in text
    assert {k: v.reveal() for k, v in read_secrets_file(path).items()} == {
        CID: NEW, "1000000003": "other-token-1234567"}
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.toml"]  # no temp file left
    fresh = tmp_path / "new" / "secrets.toml"
    store_token(fresh, CID, Secret(NEW))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert read_secrets_file(fresh)[CID].reveal() == NEW


@dataclass
class FakeEndpoints:
    valid_until: datetime
    renew_ok: bool = True
    calls: list[str] = field(default_factory=list)

    def profile(self) -> Outcome:
        self.calls.append("profile")
        return Outcome(OutcomeKind.SUCCESS, Validity(self.valid_until))

    def renew(self) -> Outcome:
        self.calls.append("renew")
        if not self.renew_ok:
            return Outcome(OutcomeKind.UNKNOWN, message="HTTP 502")
        return Outcome(OutcomeKind.SUCCESS, Renewal(Secret(NEW), START + timedelta(hours=24)))

    def close(self) -> None:
        pass


@dataclass
class World:
    now: datetime = START
    switched: list[tuple[str, str]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)


def keeper(tmp_path: Path, world: World, endpoints: FakeEndpoints, source: str,
           file_tokens: Mapping[str, Secret] | None = None, renew: bool = True) -> TokenKeeper:
    path = tmp_path / "secrets.toml"

    def write(p: Path, cid: str, token: Secret) -> None:
        world.written.append(token.reveal())

    wiring = TokenWiring(
        tokens={CID: Secret(OLD)}, sources={CID: source}, env_names={CID: "TOKEN_F1"},
        roles={CID: "follower f1"}, secrets_file=path,
        endpoints=lambda cid, token: endpoints,
        read_file=lambda p: dict(file_tokens or {}), write_file=write, renew=renew)
    return TokenKeeper(wiring, on_switch=lambda cid, t, why: world.switched.append((cid, why)),
                       on_notice=lambda cid, kind, text: world.notices.append((kind, text)),
                       now=lambda: world.now)


def test_a_token_near_its_end_is_renewed_written_and_switched(tmp_path: Path) -> None:
    world = World()
    endpoints = FakeEndpoints(START + timedelta(minutes=50))
    keep = keeper(tmp_path, world, endpoints, "secrets file")
    keep.round()
    assert endpoints.calls == ["profile", "renew"]
    assert world.written == [NEW] and world.switched == [(CID, "renewed")]
    assert [k for k, _ in world.notices] == ["token_renewed"]
    assert keep.states[CID].token == Secret(NEW)
    assert all(NEW not in text and OLD not in text for _, text in world.notices)


def test_a_token_far_from_its_end_is_read_again_an_hour_later(tmp_path: Path) -> None:
    world = World()
    endpoints = FakeEndpoints(START + timedelta(hours=20))
    keep = keeper(tmp_path, world, endpoints, "secrets file")
    keep.round()
    world.now += timedelta(minutes=59)
    keep.round()
    assert endpoints.calls == ["profile"]
    world.now += timedelta(minutes=1)
    keep.round()
    assert endpoints.calls == ["profile", "profile"] and world.switched == []


def test_an_env_var_token_is_renewed_in_memory_only(tmp_path: Path) -> None:
    world = World()
    keep = keeper(tmp_path, world, FakeEndpoints(START + timedelta(minutes=10)), "env")
    keep.round()
    assert world.written == []  # never persisted
    assert world.switched == [(CID, "renewed")]
    kinds = [k for k, _ in world.notices]
    assert kinds == ["token_not_persisted", "token_renewed"]
    assert "TOKEN_F1" in world.notices[0][1]


def test_failed_renewal_warns_half_an_hour_before_and_keeps_trying(tmp_path: Path) -> None:
    world = World()
    endpoints = FakeEndpoints(START + timedelta(minutes=45), renew_ok=False)
    keep = keeper(tmp_path, world, endpoints, "secrets file")
    keep.round()
    assert world.notices == [] and keep.warnings == {}  # 45 min left: not yet
    world.now += timedelta(minutes=16)  # 29 min left, and retried (every minute)
    keep.round()
    assert [k for k, _ in world.notices] == ["token_expiring"]
    assert "follower f1" in keep.warnings
    world.now += timedelta(minutes=1)
    keep.round()
    assert endpoints.calls.count("renew") == 3  # still trying, warned once
    assert [k for k, _ in world.notices] == ["token_expiring"]
    endpoints.renew_ok = True
    world.now += timedelta(minutes=1)
    keep.round()
    assert world.switched == [(CID, "renewed")] and keep.warnings == {}


def test_a_changed_secrets_file_switches_only_what_changed(tmp_path: Path) -> None:
    world = World()
    file_tokens = {CID: Secret(OLD)}
    keep = keeper(tmp_path, world, FakeEndpoints(START + timedelta(hours=20)),
                  "secrets file", file_tokens)
    path = tmp_path / "secrets.toml"
    path.write_text("changed")
    keep.round()
    assert world.switched == []  # same token: nothing to do
    file_tokens[CID] = Secret(NEW)
    keep.request_reload()  # SIGHUP
    keep.round()
    assert world.switched == [(CID, "reloaded from secrets.toml")]


@pytest.mark.parametrize("source", ["env"])
def test_an_env_var_token_is_not_replaced_from_the_file(tmp_path: Path, source: str) -> None:
    world = World()
    keep = keeper(tmp_path, world, FakeEndpoints(START + timedelta(hours=20)), source,
                  {CID: Secret(NEW)})
    keep.request_reload()
    keep.round()
    assert world.switched == []  # the environment wins, as at start


def test_with_renewal_off_the_last_hour_is_not_a_read_every_second(tmp_path: Path) -> None:
    world = World()
    endpoints = FakeEndpoints(START + timedelta(minutes=50))  # inside renew_before already
    keep = keeper(tmp_path, world, endpoints, "secrets file", renew=False)
    for _ in range(25 * 60):  # 25 minutes of the loop's one-second rounds
        keep.round()
        world.now += timedelta(seconds=1)
    # read at start, then once at the warning point (30 min before the end); no renewal
    assert endpoints.calls == ["profile", "profile"]
    assert [kind for kind, _ in world.notices] == ["token_expiring"]
    assert "renewal is off" in world.notices[0][1]
