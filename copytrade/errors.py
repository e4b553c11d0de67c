"""The errors copytrade expects and can explain to its user in one line.

Anything raised that is not a CopytradeError is a bug: the CLI reports it as
"unexpected" and exits 1. Exit codes are mapped in one place,
copytrade.cli.exit_codes.exit_code_for.
"""

from __future__ import annotations


class CopytradeError(Exception):
    """An expected failure with a one-line, user-facing message."""

    def __init__(self, message: str) -> None:
        # One line, because the CLI prints exactly one line per error.
        self.message = " ".join(line.strip() for line in message.splitlines() if line.strip())
        super().__init__(self.message)


class UsageError(CopytradeError):
    """The command line makes no sense (beyond what Click itself checks)."""


class ConfigError(CopytradeError):
    """The configuration or secrets file is missing, invalid or unsafe."""


class AuthError(CopytradeError):
    """The broker refused an account's credentials (DH-901: token expired or invalid)."""

    refresh_hint = (
        "Dhan access tokens last at most 24 hours: generate a new one at web.dhan.co "
        "(My Profile > Access DhanHQ APIs) and save it with `copytrade token set ACCOUNT`"
    )

    def __init__(self, message: str, *, account: str | None = None) -> None:
        self.account = account
        prefix = f"account {account}: " if account else ""
        super().__init__(f"{prefix}{message}; {self.refresh_hint}")


class BrokerError(CopytradeError):
    """The broker (or the emulator) could not be reached or refused the request."""


class AlreadyRunningError(CopytradeError):
    """Another copytrade process already holds this home's lock."""


class StoreError(CopytradeError):
    """The database cannot be opened, migrated or written."""


class DegradedError(CopytradeError):
    """follow ran, but a background loop kept failing: the run must not look clean."""


class NotFoundError(CopytradeError):
    """What the command names (a leader order id, a date with no record) is not there."""


class NotRunningError(CopytradeError):
    """`status`: follow is not running on this home."""


class UnhealthyError(CopytradeError):
    """`status`: follow runs, but an account is disconnected, refused or degraded."""


class TamperedError(CopytradeError):
    """`audit verify`: the audit trail's hash chain is broken (a row altered, inserted or
    removed)."""


class CalendarError(CopytradeError):
    """The trading calendar does not cover the time asked (past its valid-through date)."""
