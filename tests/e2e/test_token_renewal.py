"""Tokens renewed and reloaded while follow runs (issue 9), end to end on the emulator.

The emulator models each token's 24-hour validity, `/v2/profile`'s tokenValidity and
`GET /v2/RenewToken`; follow's token loop runs with a short poll. Tokens come from
secrets.toml (written back on renewal) or from environment variables (renewed in memory).
"""

from __future__ import annotations

import asyncio
import logging
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from followtools import LEADER_ID, LEADER_TOKEN, FollowRun, config_text, follower, sdk
from simtools import eventually

from copytrade.cli.context import Context
from copytrade.config.tokens import read_secrets_file
from copytrade.engine.worker import Backoff
from copytrade.home import HomePaths
from copytrade.sim.book import token_digest
from copytrade.sim.server import Emulator

F1 = follower("f1", "1000000002")
F2 = follower("f2", "1000000003", "fixed_lots = 2")
NEW_F2 = "token-f2-written-by-the-user-77c1"
OPTIONS = {"backoff_initial": 0.05, "backoff_max": 0.3, "ping_interval": 0.5,
           "ping_timeout": 0.5, "open_timeout": 2.0}


def file_token(home: Path, client_id: str) -> str:
    return read_secrets_file(home / "secrets.toml")[client_id].reveal()


def write_secrets(home: Path, tokens: dict[str, str]) -> None:
    path = home / "secrets.toml"
    lines = ["[tokens]", *(f'"{cid}" = "{token}"' for cid, token in tokens.items())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


@contextmanager
def follow_with_secrets(sim: Emulator, home: Path, in_file: dict[str, str],
                        settings: str = "", extra: str = "") -> Iterator[FollowRun]:
    """follow on `home`; f1 and f2 tokens from secrets.toml when in `in_file`, else env."""
    home.mkdir(parents=True, exist_ok=True)
    followers = [F1, follower("f2", "1000000003", "fixed_lots = 2", extra)]
    (home / "copytrade.toml").write_text(config_text(sim, followers, settings))
    write_secrets(home, in_file)
    environ = {"LEADER_TOKEN": LEADER_TOKEN}
    environ |= {f"TOKEN_{f.name.upper()}": f.token for f in followers
                if f.client_id not in in_file}
    context = Context.load(home / "copytrade.toml", environ=environ,
                           paths=HomePaths.from_dirs(home, home, home / "logs"),
                           trading_date=lambda: (datetime.now(UTC) + timedelta(
                               hours=5, minutes=30)).date())
    engine = context.follow_engine(stream_options=OPTIONS,
                                   token_options={"poll_seconds": 0.1,
                                                  "retry_every": timedelta(seconds=0.5)})
    for worker in engine.workers.values():
        worker.backoff = worker.lookup_backoff = Backoff(initial=0.05, maximum=0.2)
    run = FollowRun(sim, engine, context.store, sdk(sim, LEADER_ID, LEADER_TOKEN), followers,
                    threading.Thread(target=lambda: None))
    run.thread = threading.Thread(target=lambda: _run(run), daemon=True)
    engine.prepare()
    run.thread.start()
    try:
        yield run
    finally:
        engine.stop()
        run.thread.join(30)
        assert not run.thread.is_alive()


def _run(run: FollowRun) -> None:
    try:
        asyncio.run(run.engine.run())
    except BaseException as exc:  # surfaced to the test
        run.failure.append(exc)


def place(run: FollowRun, quantity: int = 10) -> str:
    reply = run.leader_api.place_order("1333", "NSE_EQ", "BUY", quantity, "MARKET", "CNC", 0)
    assert reply["status"] == "success", reply
    return reply["data"]["orderId"]


def lapse(sim: Emulator, client_id: str, token: str) -> None:
    """That one token of the account expires now (the emulator's own clock)."""
    account = sim.book.accounts[client_id]
    account.token_expiry[token_digest(token)] = sim.book.clock.now() - timedelta(seconds=1)


def no_token_anywhere(home: Path, tokens: list[str], text: str) -> None:
    secrets = home / "secrets.toml"
    for path in home.rglob("*"):
        if path.is_file() and path != secrets:
            data = path.read_bytes()
            assert not any(t.encode() in data for t in tokens), path
    assert not any(t in text for t in tokens)


def test_token_near_expiry_is_renewed_written_back_and_used(
        live_sim: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for f in (F1, F2):  # the emulator learns the tokens, then is told they end soon
        assert sdk(live_sim, f.client_id, f.token).get_positions()["status"] == "success"
        live_sim.book.set_token_validity(f.client_id, 20 * 60)
    with follow_with_secrets(live_sim, tmp_path, {F1.client_id: F1.token}) as run:
        run.wait_for(lambda: len(run.audit("token_renewed")) == 2, timeout=15)
        renewed = file_token(tmp_path, F1.client_id)
        assert renewed != F1.token
        assert stat.S_IMODE((tmp_path / "secrets.toml").stat().st_mode) == 0o600
        assert [a.follower for a in run.audit("token_not_persisted")] == ["f2"]  # env
        # The old tokens stop working: mirroring goes on with the renewed ones.
        lapse(live_sim, F1.client_id, F1.token)
        lapse(live_sim, F2.client_id, F2.token)
        run.wait_for(run.connected)
        place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and run.mirror_states("f2") == ["FILLED"])
        assert run.engine.status.stopped_followers == {}
        assert not run.audit("account_stopped")
    assert run.failure == []
    no_token_anywhere(tmp_path, [F1.token, F2.token, renewed], caplog.text)


def test_expired_follower_resumes_from_a_new_token_in_secrets_file(
        live_sim: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    in_file = {F2.client_id: F2.token}
    with follow_with_secrets(live_sim, tmp_path, in_file) as run:
        run.wait_for(run.connected)
        live_sim.expire_token(F2.client_id)
        first = place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and "f2" in run.engine.status.stopped_followers)
        second = place(run, 5)  # f2 is stopped: nothing is decided for it meanwhile
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED", "FILLED"])
        assert [m.state for m in run.mirrors("f2")] == ["SUBMITTED"]
        write_secrets(tmp_path, {F2.client_id: NEW_F2})  # the user pastes a new token
        run.wait_for(lambda: sorted((m.leader_order_id, m.state) for m in run.mirrors("f2"))
                     == sorted([(first, "FILLED"), (second, "FILLED")]), timeout=15)
        assert "f2" not in run.engine.status.stopped_followers
        assert len(run.audit("account_resumed")) == 1
        # one order per leader order at the broker: the refused place was never doubled
        assert len(run.follower_book(F2)) == 2
        third = place(run, 3)
        run.wait_for(lambda: any(m.leader_order_id == third and m.state == "FILLED"
                                 for m in run.mirrors("f2")))
    assert run.failure == []
    no_token_anywhere(tmp_path, [F2.token, NEW_F2, F1.token], caplog.text)


def test_a_mirror_too_old_when_the_token_comes_back_ends_with_the_reason(
        live_sim: Emulator, tmp_path: Path) -> None:
    in_file = {F2.client_id: F2.token}
    with follow_with_secrets(live_sim, tmp_path, in_file,
                             extra="max_order_age_seconds = 1") as run:
        run.wait_for(run.connected)
        live_sim.expire_token(F2.client_id)
        place(run)
        run.wait_for(lambda: run.mirror_states("f1") == ["FILLED"]
                     and "f2" in run.engine.status.stopped_followers)
        eventually(lambda: (datetime.now(UTC) - run.mirrors("f2")[0].created_at.replace(
            tzinfo=UTC)).total_seconds() > 1.5, timeout=5)
        write_secrets(tmp_path, {F2.client_id: NEW_F2})
        run.wait_for(lambda: run.mirror_states("f2") == ["CANCELED"], timeout=15)
        mirror = run.mirrors("f2")[0]
        assert "max_order_age_seconds" in mirror.reason and "not chased" in mirror.reason
        assert run.follower_book(F2) == []  # never sent
        statuses = [i.status for i in run.intents("f2")]
        assert statuses == ["AUTH", "SKIPPED"]
    assert run.failure == []
