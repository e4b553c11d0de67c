"""Process exit codes, and the one place that maps errors to them (see docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum

from copytrade.errors import (
    AlreadyRunningError,
    AuthError,
    BrokerError,
    CalendarError,
    ConfigError,
    DegradedError,
    NotFoundError,
    NotRunningError,
    StoreError,
    TamperedError,
    UnhealthyError,
    UsageError,
)

# Typer 0.2x vendors Click as typer._click and raises its exceptions; older
# Typer raises click's own. Either way these are the classes Typer raises.
try:
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older Typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # unexpected internal error: a bug
    USAGE = 2  # same code Click uses for its own usage errors
    CONFIG = 3
    AUTH = 4
    BROKER = 5
    ALREADY_RUNNING = 6
    STORE = 7
    DEGRADED = 8  # follow ran, but a background loop kept failing
    NOT_FOUND = 9  # the leader order id, or the day, named is not in the record
    NOT_RUNNING = 10  # status: follow is not running on this home
    UNHEALTHY = 11  # status: follow runs, but an account is disconnected or refused
    TAMPERED = 12  # audit verify: the hash chain is broken
    CALENDAR = 13  # the trading calendar does not cover the time asked
    INTERRUPTED = 130  # 128 + SIGINT, the shell convention


_CODE_FOR_ERROR: dict[type[BaseException], ExitCode] = {
    UsageError: ExitCode.USAGE,
    click_exceptions.UsageError: ExitCode.USAGE,
    ConfigError: ExitCode.CONFIG,
    AuthError: ExitCode.AUTH,
    BrokerError: ExitCode.BROKER,
    AlreadyRunningError: ExitCode.ALREADY_RUNNING,
    StoreError: ExitCode.STORE,
    DegradedError: ExitCode.DEGRADED,
    NotFoundError: ExitCode.NOT_FOUND,
    NotRunningError: ExitCode.NOT_RUNNING,
    UnhealthyError: ExitCode.UNHEALTHY,
    TamperedError: ExitCode.TAMPERED,
    CalendarError: ExitCode.CALENDAR,
    KeyboardInterrupt: ExitCode.INTERRUPTED,
}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for an error; subclasses inherit their nearest mapped ancestor's."""
    for cls in type(exc).__mro__:
        if cls in _CODE_FOR_ERROR:
            return _CODE_FOR_ERROR[cls]
    return ExitCode.FAILURE
