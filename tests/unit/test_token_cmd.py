"""`copytrade token set` / `token status`, their pure parts: which account a name means,
where its token comes from, what a typed token must look like, how a profile answer is
judged, what is printed (plain, Rich at 80 and 120 columns, JSON), and the exit verdict."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from copytrade.cli import token_cmd
from copytrade.cli.token_cmd import (
    TokenRow,
    set_report,
    status_data,
    status_lines,
    status_table,
    validity_text,
    verdict,
)
from copytrade.config.load import load_config
from copytrade.config.token_accounts import (
    TokenOrigin,
    find_account,
    token_accounts,
    token_origins,
    typed_token,
)
from copytrade.dhan.rest import Outcome, OutcomeKind
from copytrade.dhan.token_api import Validity
from copytrade.engine.token_check import TokenCheck, check_tokens, judge, time_left
from copytrade.errors import BrokerError, NotFoundError, UnhealthyError, UsageError
from copytrade.secret import Secret

NOW = datetime(2026, 11, 30, 2, 45, tzinfo=UTC)  # 08:15 IST
UNTIL = NOW + timedelta(hours=23, minutes=59, seconds=30)
TOKEN = "tok-UNIT-cmd-4c1d9e77aa"
CONFIG = """
[leader]
client_id = "1000000001"
access_token_env = "T_LEADER"

[[followers]]
name = "family-1"
client_id = "1000000002"
access_token_env = "T_F1"
multiplier = 1.0

[[followers]]
name = "trial"
client_id = "1000000003"
access_token_env = "T_TRIAL"
multiplier = 1.0
enabled = false
"""


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "copytrade.toml"
    path.write_text(CONFIG)
    return load_config(path)


def profile(until: datetime) -> Outcome:
    return Outcome(OutcomeKind.SUCCESS, Validity(until, "Active"))


# ---- which account -------------------------------------------------------------------------


def test_account_by_role_name_any_case_or_client_id(config) -> None:  # type: ignore[no-untyped-def]
    assert find_account(config, "leader").label == "leader"
    assert find_account(config, " LEADER ").client_id == "1000000001"
    assert find_account(config, "Family-1").label == "follower family-1"
    assert find_account(config, "1000000003").name == "trial"
    assert [a.label for a in token_accounts(config)] == [
        "leader", "follower family-1", "follower trial"]


def test_unknown_account_lists_the_choices_and_never_echoes_a_long_argument(config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError) as short:
        find_account(config, "famly-1")
    assert "'famly-1'" in short.value.message
    assert "leader, family-1, trial" in short.value.message
    assert "1000000001, 1000000002, 1000000003" in short.value.message
    with pytest.raises(NotFoundError) as long:  # someone put the token on the command line
        find_account(config, TOKEN)
    assert TOKEN not in long.value.message and TOKEN[:10] not in long.value.message
    assert "never taken from the command line" in long.value.message


# ---- the token typed in ----------------------------------------------------------------------


def test_typed_token_is_stripped() -> None:
    assert typed_token(f"  {TOKEN}\n", "leader") == TOKEN


@pytest.mark.parametrize(("text", "why"), [
    ("", "no token given"),
    (" \n\t", "no token given"),
    ("tok-with a-space-inside", "contains a space at position 9"),
    ("tok-first-line-xx\nsecond-line-yyyy", "contains a control character at position 18"),
    ("short-tok", "is 9 characters long"),
    ("tok-naïve-unicode-1234", "not printable ASCII at position 7"),
])
def test_typed_token_refused_without_quoting_it(text: str, why: str) -> None:
    with pytest.raises(UsageError) as refused:
        typed_token(text, "follower f1")
    assert why in refused.value.message
    for part in text.split():
        assert part not in refused.value.message


def test_stdin_is_read_bounded_and_a_terminal_gets_a_hidden_prompt(
        monkeypatch: pytest.MonkeyPatch, config) -> None:  # type: ignore[no-untyped-def]
    target = find_account(config, "leader")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"x" * (64 * 1024 + 1))))
    with pytest.raises(UsageError, match="more than 64 KiB"):
        token_cmd._read_token(target)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff" + TOKEN.encode())))
    with pytest.raises(UsageError, match="not printable ASCII at position 1"):
        typed_token(token_cmd._read_token(target), "leader")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    asked = {}

    def prompt(text: str, **options: object) -> str:
        asked.update(options, text=text)
        return TOKEN

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("typer.prompt", prompt)
    assert token_cmd._read_token(target) == TOKEN
    assert asked == {"text": "Access token for leader (1000000001)", "hide_input": True,
                     "err": True}


# ---- where each token comes from -------------------------------------------------------------


def test_origins_env_first_then_file_missing_and_malformed(config) -> None:  # type: ignore[no-untyped-def]
    environ = {"T_LEADER": TOKEN, "T_F1": "   "}  # an empty variable counts as unset
    origins = token_origins(config, environ, {"1000000001": Secret("file-token-ignored-1"),
                                              "1000000002": Secret("file-token-family-1")})
    assert [(o.source_text, o.token.reveal() if o.token else None) for o in origins] == [
        ("env T_LEADER", TOKEN), ("secrets file", "file-token-family-1"), ("MISSING", None)]
    bad = token_origins(config, {"T_LEADER": "has a space in it ok"}, {})[0]
    assert (bad.source_text, bad.token) == ("env T_LEADER", None)
    assert "contains a space at position 4" in bad.problem
    assert "has a space" not in bad.problem


# ---- what Dhan says --------------------------------------------------------------------------


def test_judge_profile_answers() -> None:
    assert judge(profile(UNTIL), NOW) == TokenCheck("valid", UNTIL)
    assert judge(profile(NOW + timedelta(minutes=30)), NOW).state == "expiring"
    assert judge(profile(NOW + timedelta(minutes=31)), NOW).state == "valid"
    assert judge(Outcome(OutcomeKind.AUTH, code="DH-901"), NOW) == TokenCheck(
        "refused", detail="DH-901")
    static_ip = judge(Outcome(OutcomeKind.AUTH, code="STATIC-IP"), NOW)
    assert static_ip.state == "unknown" and "static IP" in static_ip.detail
    lost = Outcome(OutcomeKind.UNKNOWN, message="ConnectionError: HTTPConnectionPool(host="
                   "'127.0.0.1', port=1): Max retries exceeded")
    assert judge(lost, NOW) == TokenCheck("unknown", detail="no answer (ConnectionError)")
    odd = judge(Outcome(OutcomeKind.UNKNOWN, message="profile: unreadable tokenValidity"), NOW)
    assert odd.detail == "unknown profile: unreadable tokenValidity"


def test_time_left_in_whole_minutes() -> None:
    assert time_left(UNTIL, NOW) == "23 h 59 min"
    assert time_left(NOW + timedelta(minutes=12, seconds=59), NOW) == "12 min"
    assert time_left(NOW + timedelta(hours=2), NOW) == "2 h 0 min"
    assert time_left(NOW - timedelta(seconds=1), NOW) == "expired"


class FakeEndpoints:
    def __init__(self, outcome: Outcome, barrier: threading.Barrier) -> None:
        self.outcome, self.barrier, self.closed = outcome, barrier, False

    def profile(self) -> Outcome:
        self.barrier.wait(timeout=5)  # every account is asked at once, or this times out
        return self.outcome

    def renew(self) -> Outcome:
        raise AssertionError("token status never renews")

    def close(self) -> None:
        self.closed = True


def test_accounts_are_asked_concurrently_in_order_and_closed() -> None:
    barrier = threading.Barrier(3)
    fakes = [FakeEndpoints(profile(UNTIL), barrier),
             FakeEndpoints(Outcome(OutcomeKind.AUTH, code="DH-901"), barrier),
             FakeEndpoints(profile(NOW + timedelta(minutes=5)), barrier)]
    checks = check_tokens([lambda f=f: f for f in fakes], lambda: NOW)
    assert [c.state for c in checks] == ["valid", "refused", "expiring"]
    assert all(f.closed for f in fakes)
    assert check_tokens([], lambda: NOW) == []


# ---- what is printed ---------------------------------------------------------------------------


def test_validity_text() -> None:
    assert validity_text(TokenCheck("valid", UNTIL), NOW) == (
        "valid until 2026-12-01 08:14 IST (in 23 h 59 min)")
    soon = TokenCheck("expiring", NOW + timedelta(minutes=12))
    assert validity_text(soon, NOW) == (
        "valid until 2026-11-30 08:27 IST (in 12 min): EXPIRES WITHIN 30 MIN")
    assert validity_text(TokenCheck("refused", detail="DH-901"), NOW) == (
        "REFUSED by Dhan (DH-901)")
    assert validity_text(TokenCheck("unknown", detail="no answer (ReadTimeout)"), NOW) == (
        "validity unknown: no answer (ReadTimeout)")


def test_set_report(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = find_account(config, "family-1")
    out, warnings = set_report(target, tmp_path / "secrets.toml", TokenCheck("valid", UNTIL),
                               NOW, env_wins=False)
    assert out == [f"saved the token of follower family-1 (1000000002) in "
                   f"{tmp_path / 'secrets.toml'}",
                   "valid until 2026-12-01 08:14 IST (in 23 h 59 min)",
                   "a running follow switches to it within seconds by itself (at once on "
                   "SIGHUP); no restart needed"]
    assert warnings == []
    out, warnings = set_report(target, tmp_path / "secrets.toml",
                               TokenCheck("unknown", detail="no answer (ConnectionError)"),
                               NOW, env_wins=True)
    assert len(out) == 1
    assert warnings[0] == "validity unknown: no answer (ConnectionError); the token is saved"
    assert "T_F1 is set" in warnings[1] and "used only once T_F1 is unset" in warnings[1]


def rows_for(config, checks: dict[str, TokenCheck | None],  # type: ignore[no-untyped-def]
             problem: dict[str, str] | None = None) -> list[TokenRow]:
    rows = []
    for account in token_accounts(config):
        check = checks.get(account.client_id)
        bad = (problem or {}).get(account.client_id, "")
        source = "secrets file" if check or bad else None
        token = Secret(TOKEN) if check else None
        rows.append(TokenRow(TokenOrigin(account, token, source, bad), check))
    return rows


def test_verdict_and_plain_lines(config) -> None:  # type: ignore[no-untyped-def]
    valid = TokenCheck("valid", UNTIL)
    good = rows_for(config, {"1000000001": valid, "1000000002": valid})
    assert verdict(good) is None  # the disabled follower needs no token
    assert status_lines(good, NOW, ok=True) == [
        "account                    client id   token from    validity",
        "leader                     1000000001  secrets file  valid until 2026-12-01 08:14 "
        "IST (in 23 h 59 min)",
        "follower family-1          1000000002  secrets file  valid until 2026-12-01 08:14 "
        "IST (in 23 h 59 min)",
        "follower trial (disabled)  1000000003  MISSING       not needed (disabled)",
        "ok: every token in use is valid for more than 30 min",
    ]
    missing = rows_for(config, {"1000000001": TokenCheck("refused", detail="DH-901")})
    problem = verdict(missing)
    assert isinstance(problem, UnhealthyError)
    assert problem.message == (
        "2 of 3 tokens need attention: leader: refused (DH-901); follower family-1: no token "
        "(set it: copytrade token set family-1)")
    unknown = rows_for(config, {"1000000001": valid,
                                "1000000002": TokenCheck("unknown", detail="no answer (X)")})
    assert isinstance(verdict(unknown), BrokerError)
    malformed = rows_for(config, {"1000000001": valid},
                         {"1000000002": "the access token is 9 characters long"})
    assert "malformed token (secrets file)" in verdict(malformed).message  # type: ignore[union-attr]
    assert "MALFORMED: the access token is 9 characters long" in "\n".join(
        status_lines(malformed, NOW, ok=False))


@pytest.mark.parametrize("width", [80, 120])
def test_rich_table_fits_the_terminal(config, width: int) -> None:  # type: ignore[no-untyped-def]
    rows = rows_for(config, {"1000000001": TokenCheck("valid", UNTIL),
                             "1000000002": TokenCheck("expiring", NOW + timedelta(minutes=9))})
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(status_table(rows, NOW))
    text = console.export_text()
    assert all(len(line) <= width for line in text.splitlines())
    flat = " ".join(text.split())
    for expected in ("leader", "family-1", "1000000002", "secrets file", "MISSING",
                     "EXPIRES", "08:14", "IST"):
        assert expected in flat, expected


def test_json_carries_state_ist_times_and_the_exit_code(config) -> None:  # type: ignore[no-untyped-def]
    rows = rows_for(config, {"1000000001": TokenCheck("valid", UNTIL),
                             "1000000002": TokenCheck("expiring", NOW + timedelta(minutes=9))})
    data = status_data(rows, NOW, verdict(rows))
    assert (data["ok"], data["exit_code"], data["now"]) == (False, 11,
                                                            "2026-11-30T08:15:00+05:30")
    leader, family, trial = data["accounts"]
    assert leader == {"role": "leader", "name": None, "client_id": "1000000001",
                      "enabled": True, "source": "secrets file", "env_var": "T_LEADER",
                      "state": "valid", "valid_until": "2026-12-01T08:14+05:30",
                      "time_left": "23 h 59 min", "detail": ""}
    assert (family["state"], family["time_left"]) == ("expiring", "9 min")
    assert (trial["state"], trial["source"], trial["enabled"]) == ("not needed", None, False)
    assert TOKEN not in str(data)
