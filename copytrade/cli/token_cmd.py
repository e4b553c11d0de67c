"""`copytrade token set ACCOUNT` and `copytrade token status`: each morning's new access
token saved without editing files, and every account's token checked with Dhan.

A token is read from a hidden prompt or stdin, never from the command line (it would sit
in the shell's history and in `ps`), and is never printed: only where it comes from and
what Dhan says of it (`GET /v2/profile`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from copytrade.cli.config_cmd import ConfigOption
from copytrade.cli.fast_help import FastHelpGroup
from copytrade.errors import AuthError

if TYPE_CHECKING:
    from rich.table import Table

    from copytrade.config import Config
    from copytrade.config.token_accounts import TokenAccount, TokenOrigin
    from copytrade.engine.token_check import TokenCheck
    from copytrade.errors import CopytradeError
    from copytrade.secret import Secret

token_app = typer.Typer(
    name="token",
    help="Save and check the accounts' access tokens.",
    cls=FastHelpGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
MAX_INPUT = 64 * 1024  # bytes read from stdin: far above any token, far below harm
ATTENTION = ("missing", "malformed", "refused", "expiring")  # token status exits 11
STYLES = {"valid": "green", "expiring": "yellow", "unknown": "yellow", "refused": "red",
          "missing": "red", "malformed": "red", "not needed": "dim"}


class TokenRefusedError(AuthError):
    """Dhan refused the token given to `token set` (DH-901): exit 4, nothing saved."""

    refresh_hint = ("a Dhan token lasts at most 24 hours: generate a new one at web.dhan.co "
                    "(My Profile > Access DhanHQ APIs) and run `copytrade token set` again")


def _now() -> datetime:
    return datetime.now(UTC)


# ---- token set ----------------------------------------------------------------------------


# Extra arguments are taken in to be refused by us: Click's own error would quote them,
# and the extra argument is most likely the token itself.
@token_app.command("set", context_settings={"allow_extra_args": True,
                                            "ignore_unknown_options": True})
def set_command(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(
        metavar="ACCOUNT", help="leader, a follower's name, or a client id.")],
    config: ConfigOption = None,
) -> None:
    """Save an account's access token in secrets.toml (0600), then show its validity.

    The token is read from a hidden prompt, or from stdin when stdin is not a terminal
    (`copytrade token set f1 < token.txt`); never from the command line. Its shape is
    checked, then Dhan is asked about it (GET /v2/profile): a refused token (DH-901) is
    not saved (exit 4); no answer saves it with a warning. A running follow switches to
    it within seconds by itself. Exit 2 for no or a malformed token, 3 for a bad
    configuration, 9 for an unknown ACCOUNT.
    """
    from copytrade.config import load_config
    from copytrade.config.token_accounts import env_token_set, find_account, typed_token
    from copytrade.config.tokens import store_token
    from copytrade.errors import UsageError
    from copytrade.home import home_paths
    from copytrade.secret import Secret

    if ctx.args:
        raise UsageError(f"token set takes only ACCOUNT, but {len(ctx.args)} more argument(s) "
                         "were given (not shown: a token is never taken from the command "
                         "line; it is read from a hidden prompt or stdin)")
    loaded = load_config(config)
    target = find_account(loaded, account)
    # Checked before it becomes a Secret: a Secret registers its value for redaction.
    token = Secret(typed_token(_read_token(target), target.label))
    check = _check(loaded, [(target, token)])[0]
    if check.state == "refused":
        raise TokenRefusedError(f"Dhan refused this token for {target.label} "
                                f"({target.client_id}, {check.detail}): nothing was saved")
    secrets_file = home_paths().secrets_file
    store_token(secrets_file, target.client_id, token)
    env_wins = env_token_set(target.account, _environ())
    out, warnings = set_report(target, secrets_file, check, _now(), env_wins=env_wins)
    typer.echo("\n".join(out))
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)


def _read_token(target: TokenAccount) -> str:
    """A hidden prompt on a terminal (on stderr: stdout may be a file), else stdin."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        return str(typer.prompt(f"Access token for {target.label} ({target.client_id})",
                                hide_input=True, err=True))
    if stdin is None:
        return ""
    binary = getattr(stdin, "buffer", None)
    data = binary.read(MAX_INPUT + 1) if binary is not None else stdin.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        from copytrade.errors import UsageError

        raise UsageError(f"stdin holds more than {MAX_INPUT // 1024} KiB: that is not a "
                         "token (nothing was saved)")
    # Undecodable bytes stay visible to the shape check, which names their position.
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data


def set_report(target: TokenAccount, secrets_file: Path, check: TokenCheck, now: datetime,
               *, env_wins: bool) -> tuple[list[str], list[str]]:
    """What `token set` prints once the token is saved: (stdout lines, warnings)."""
    out = [f"saved the token of {target.label} ({target.client_id}) in {secrets_file}"]
    warnings = []
    if check.answered:
        out.append(validity_text(check, now))
    else:
        warnings.append(f"validity unknown: {check.detail}; the token is saved")
    variable = target.account.access_token_env
    if env_wins:
        warnings.append(f"the environment variable {variable} is set and copytrade uses it "
                        "before secrets.toml: the token saved here is used only once "
                        f"{variable} is unset")
    else:
        out.append("a running follow switches to it within seconds by itself (at once on "
                   "SIGHUP); no restart needed")
    return out, warnings


# ---- token status -------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRow:
    origin: TokenOrigin
    check: TokenCheck | None  # None: no token to check

    @property
    def account(self) -> TokenAccount:
        return self.origin.account

    @property
    def state(self) -> str:
        if self.origin.problem:
            return "malformed"
        if self.check is None:
            return "missing" if self.account.enabled else "not needed"
        return self.check.state

    @property
    def needs_attention(self) -> bool:
        return self.account.enabled and self.state in ATTENTION


@token_app.command("status")
def status_command(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (times in IST).")] = False,
) -> None:
    """Show where each account's token comes from and how long Dhan still takes it.

    One row per account (the leader, each follower): client id, token source (env NAME,
    secrets file or MISSING) and, from GET /v2/profile (all accounts at once, each bounded
    by http_timeout_seconds), the validity in IST. Exit 0 when every token is valid for
    more than 30 minutes; 11 when one is missing, malformed, refused or expires within 30
    minutes; 5 when only some could not be checked (no answer).
    """
    from copytrade.config import load_config
    from copytrade.config.token_accounts import token_origins
    from copytrade.config.tokens import read_secrets_file
    from copytrade.home import home_paths

    loaded = load_config(config)
    origins = token_origins(loaded, _environ(), read_secrets_file(home_paths().secrets_file))
    checks = iter(_check(loaded, [(o.account, o.token) for o in origins if o.token]))
    rows = [TokenRow(o, next(checks) if o.token else None) for o in origins]
    now = _now()
    problem = verdict(rows)
    if as_json:
        typer.echo(json.dumps(status_data(rows, now, problem), indent=2))
    else:
        _print_status(rows, now, ok=problem is None)
    if problem is not None:
        raise problem


def verdict(rows: list[TokenRow]) -> CopytradeError | None:
    """UnhealthyError (11) when a token needs attention; BrokerError (5) when the rest
    are fine but some could not be checked; None when every token is valid."""
    from copytrade.errors import BrokerError, UnhealthyError

    bad = [r for r in rows if r.needs_attention]
    if bad:
        return UnhealthyError(f"{len(bad)} of {len(rows)} tokens need attention: "
                              + "; ".join(f"{r.account.label}: {_short(r)}" for r in bad))
    unknown = [r for r in rows if r.account.enabled and r.state == "unknown"]
    if unknown:
        return BrokerError("token validity unknown for " + "; ".join(
            f"{r.account.label}: {r.check.detail if r.check else ''}" for r in unknown))
    return None


def _short(row: TokenRow) -> str:
    state = row.state
    if state == "expiring":
        return "expires within 30 min"
    if state == "refused":
        return f"refused ({row.check.detail if row.check else 'DH-901'})"
    if state == "missing":
        return f"no token (set it: copytrade token set {row.account.name or 'leader'})"
    return f"malformed token ({row.origin.source_text})"


def validity_text(check: TokenCheck, now: datetime) -> str:
    """`valid until 2026-12-01 08:14 IST (in 23 h 59 min)`, or why there is no such line."""
    from copytrade.core.ist import ist_text
    from copytrade.engine.token_check import time_left

    if check.state == "refused":
        return f"REFUSED by Dhan ({check.detail})"
    if check.valid_until is None:
        return f"validity unknown: {check.detail}"
    text = (f"valid until {ist_text(check.valid_until, seconds=False)} "
            f"(in {time_left(check.valid_until, now)})")
    return text.replace("(in expired)", "(expired)") + (
        ": EXPIRES WITHIN 30 MIN" if check.state == "expiring" else "")


def row_cells(row: TokenRow, now: datetime) -> tuple[str, str, str, str]:
    """account, client id, token from, validity."""
    account = row.account
    label = account.label + ("" if account.enabled else " (disabled)")
    if row.origin.problem:
        validity = f"MALFORMED: {row.origin.problem}"
    elif row.check is None:
        validity = "-" if account.enabled else "not needed (disabled)"
    else:
        validity = validity_text(row.check, now)
    return label, account.client_id, row.origin.source_text, validity


HEADER = ("account", "client id", "token from", "validity")
OK_LINE = "ok: every token in use is valid for more than 30 min"


def status_table(rows: list[TokenRow], now: datetime) -> Table:
    """The Rich view (a terminal): the validity coloured by state."""
    from copytrade.cli.render import text_table

    return text_table(HEADER, [row_cells(r, now) for r in rows],
                      [STYLES.get(r.state, "") for r in rows], styled_column=3)


def status_lines(rows: list[TokenRow], now: datetime, *, ok: bool) -> list[str]:
    """Plain text (pipes, cron mail); a problem is the command's one error line."""
    from copytrade.cli.render import plain_table

    lines = plain_table(HEADER, [row_cells(r, now) for r in rows]).splitlines()
    return lines + ([OK_LINE] if ok else [])


def _print_status(rows: list[TokenRow], now: datetime, *, ok: bool) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(status_table(rows, now))
        if ok:
            console.print(OK_LINE, style="bold green")
    else:
        typer.echo("\n".join(status_lines(rows, now, ok=ok)))


def status_data(rows: list[TokenRow], now: datetime,
                problem: CopytradeError | None) -> dict[str, Any]:
    """For --json: times in IST with their offset; exit_code as the command exits."""
    from copytrade.cli.exit_codes import exit_code_for
    from copytrade.core.ist import to_ist
    from copytrade.engine.token_check import time_left
    from copytrade.redact import redact_value

    def account(row: TokenRow) -> dict[str, Any]:
        until = row.check.valid_until if row.check else None
        return {
            "role": row.account.role, "name": row.account.name,
            "client_id": row.account.client_id, "enabled": row.account.enabled,
            "source": row.origin.source, "env_var": row.account.account.access_token_env,
            "state": row.state,
            "valid_until": to_ist(until).isoformat(timespec="minutes") if until else None,
            "time_left": time_left(until, now) if until else None,
            "detail": row.origin.problem or (row.check.detail if row.check else ""),
        }

    data = {"ok": problem is None, "exit_code": int(exit_code_for(problem)) if problem else 0,
            "why": problem.message if problem else None,
            "now": to_ist(now).isoformat(timespec="seconds"),
            "accounts": [account(r) for r in rows]}
    return redact_value(data)  # type: ignore[no-any-return]


# ---- shared -------------------------------------------------------------------------------


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _check(loaded: Config, accounts: list[tuple[TokenAccount, Secret]]) -> list[TokenCheck]:
    """Each account's profile, concurrently, over its own URL and egress, bounded by the
    configured http_timeout_seconds."""
    from copytrade.engine.broker import token_api_for
    from copytrade.engine.token_check import check_tokens

    timeout = loaded.settings.http_timeout_seconds

    def probe(account: TokenAccount, token: Secret):  # type: ignore[no-untyped-def]
        return lambda: token_api_for(account.account, token, timeout=timeout)

    return check_tokens([probe(a, t) for a, t in accounts], _now)
