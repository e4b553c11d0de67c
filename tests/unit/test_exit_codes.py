from __future__ import annotations

import re
from pathlib import Path

import pytest

from copytrade import errors
from copytrade.cli.exit_codes import ExitCode, click_exceptions, exit_code_for
from copytrade.errors import AuthError, CopytradeError

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_subclasses(sub)]
    return found


# Only the tree errors.py defines: tests may subclass these for their own needs.
ERROR_CLASSES = [cls for cls in all_subclasses(CopytradeError) if cls.__module__ == errors.__name__]


def test_the_error_tree_is_complete() -> None:
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert names == {
        "UsageError",
        "ConfigError",
        "AuthError",
        "BrokerError",
        "AlreadyRunningError",
        "StoreError",
        "DegradedError",
        "NotFoundError",
        "NotRunningError",
        "UnhealthyError",
        "TamperedError",
        "CalendarError",
    }


def test_every_error_class_has_its_own_code() -> None:
    codes = {cls: exit_code_for(cls("boom")) for cls in ERROR_CLASSES}
    assert len(set(codes.values())) == len(codes), codes
    for cls, code in codes.items():
        assert code not in {ExitCode.OK, ExitCode.FAILURE, ExitCode.INTERRUPTED}, cls


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.UsageError("x"), ExitCode.USAGE),
        (errors.ConfigError("x"), ExitCode.CONFIG),
        (errors.AuthError("x"), ExitCode.AUTH),
        (errors.BrokerError("x"), ExitCode.BROKER),
        (errors.AlreadyRunningError("x"), ExitCode.ALREADY_RUNNING),
        (errors.StoreError("x"), ExitCode.STORE),
        (errors.DegradedError("x"), ExitCode.DEGRADED),
        (errors.NotFoundError("x"), ExitCode.NOT_FOUND),
        (errors.NotRunningError("x"), ExitCode.NOT_RUNNING),
        (errors.UnhealthyError("x"), ExitCode.UNHEALTHY),
        (errors.TamperedError("x"), ExitCode.TAMPERED),
        (errors.CalendarError("x"), ExitCode.CALENDAR),
        (CopytradeError("x"), ExitCode.FAILURE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (click_exceptions.UsageError("x"), ExitCode.USAGE),
        (ValueError("x"), ExitCode.FAILURE),
    ],
)
def test_exit_code_for(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) == code


def test_a_subclass_inherits_its_parents_code() -> None:
    class TokenExpired(AuthError):
        pass

    assert exit_code_for(TokenExpired("x")) == ExitCode.AUTH


def test_click_usage_errors_share_clicks_code() -> None:
    assert click_exceptions.UsageError("x").exit_code == ExitCode.USAGE


def test_messages_are_one_line() -> None:
    assert CopytradeError("first\n  second\n").message == "first second"


def test_auth_error_says_how_to_refresh() -> None:
    message = AuthError("access token expired (DH-901)", account="follower-1").message
    assert message.startswith("account follower-1: access token expired (DH-901); ")
    assert "web.dhan.co" in message
    assert "copytrade token set" in message


def documented_exit_codes() -> dict[int, str]:
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`?([A-Z_]+)`?\s*\|", CLI_DOC.read_text(), re.M)
    return {int(code): name for code, name in rows}


def test_docs_list_every_exit_code() -> None:
    assert documented_exit_codes() == {code.value: code.name for code in ExitCode}
