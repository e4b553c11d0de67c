"""The `copytrade` command: the Typer app and the one error funnel, main().

Commands live one per module and import their heavy dependencies (rich tables,
dhanhq, websockets, peewee) inside the command function, so `copytrade --help`
stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from copytrade import __version__
from copytrade.cli.audit_cmd import audit_app
from copytrade.cli.bus_cmd import bus_app
from copytrade.cli.cancel_mirror import cancel_mirror
from copytrade.cli.config_cmd import config_app
from copytrade.cli.demo import demo
from copytrade.cli.exit_codes import ExitCode, click_exceptions, exit_code_for
from copytrade.cli.explain import explain
from copytrade.cli.fast_help import FastHelpGroup
from copytrade.cli.follow import follow
from copytrade.cli.instruments import instruments_app
from copytrade.cli.mappings import mappings
from copytrade.cli.market_status import market_status
from copytrade.cli.replay_missed import replay_missed
from copytrade.cli.sim import sim_app
from copytrade.cli.stats import stats
from copytrade.cli.status import status
from copytrade.cli.token_cmd import token_app
from copytrade.errors import CopytradeError

PROG_NAME = "copytrade"
DEBUG_ENV_VAR = "COPYTRADE_DEBUG"
# Shell completion (copytrade/cli/completion.py, imported only when asked for): the variable
# its scripts set for a completion request, and the root options that take an optional SHELL.
COMPLETE_VAR = "_COPYTRADE_COMPLETE"
COMPLETION_OPTIONS = ("--install-completion", "--show-completion")

app = typer.Typer(
    name=PROG_NAME,
    help="Mirror every order of a DhanHQ leader account onto follower accounts.",
    cls=FastHelpGroup,  # `copytrade CMD --help` without pydantic
    no_args_is_help=True,
    add_completion=False,
    # Plain Click help: --help skips importing Rich (~70 ms) and reads like Click's errors.
    rich_markup_mode=None,
    # Locals can hold access tokens: never print them.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:  # a tab press after --version completes, not prints
        typer.echo(f"{PROG_NAME} {__version__}")
        raise typer.Exit()


def _completion_flag(ctx: typer.Context, param: typer.CallbackParam, value: bool) -> None:
    # run() answers these options itself, SHELL included; this serves other callers
    # (Typer's test runner): the option alone, for the shell detected.
    if value and not ctx.resilient_parsing:
        from copytrade.cli.completion import answer_option

        answer_option(param.opts[0], None)


def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV_VAR,
            help=f"Show the full traceback when a command fails (or set {DEBUG_ENV_VAR}=1).",
        ),
    ] = False,
    # Flags as far as Click knows (a str option would load pydantic on every command);
    # the optional SHELL after them is read by run().
    install_completion: Annotated[
        bool,
        typer.Option(
            "--install-completion",
            callback=_completion_flag,
            is_eager=True,
            expose_value=False,
            help="Install tab completion for the shell named after it (bash, zsh or fish) "
            "or, alone, for the shell you run it from.",
        ),
    ] = False,
    show_completion: Annotated[
        bool,
        typer.Option(
            "--show-completion",
            callback=_completion_flag,
            is_eager=True,
            expose_value=False,
            help="Print the completion script (for a shell named as above) to install by hand.",
        ),
    ] = False,
) -> None:
    """Mirror every order of a DhanHQ leader account onto follower accounts."""
    # --debug is read by main() from the parsed parameters; nothing to do here.


app.callback()(root)
app.add_typer(sim_app, name="sim")
app.command("follow")(follow)
app.command("cancel-mirror")(cancel_mirror)
app.command("replay-missed")(replay_missed)
app.command("demo")(demo)
app.command("mappings")(mappings)
app.command("stats")(stats)
app.command("explain")(explain)
app.command("status")(status)
app.command("market-status")(market_status)
app.add_typer(audit_app, name="audit")
app.add_typer(instruments_app, name="instruments")
app.add_typer(config_app, name="config")
app.add_typer(token_app, name="token")
app.add_typer(bus_app, name="bus")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console script entry point (`copytrade`, `python -m copytrade`)."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None, *, typer_app: typer.Typer = app) -> int:
    """Run the CLI and turn every outcome into an exit code and at most one error line."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(typer_app)
    debug = _env_flag(DEBUG_ENV_VAR)
    try:
        if instruction := os.environ.get(COMPLETE_VAR):  # a tab press, from the shell's script
            from copytrade.cli.completion import answer_request

            return answer_request(command, instruction)
        if asked := _completion_option(args):
            from copytrade.cli.completion import answer_option

            answer_option(*asked)  # raises typer.Exit
        # Click's standalone mode, minus its swallowing of KeyboardInterrupt and
        # exceptions: every failure comes through the handlers below.
        with command.make_context(PROG_NAME, args) as ctx:
            debug = debug or bool(ctx.params.get("debug"))
            command.invoke(ctx)
    except typer.Exit as exc:  # --help, --version, typer.Exit(code)
        return exc.exit_code
    except click_exceptions.ClickException as exc:  # Click's own usage errors: its message, exit 2
        exc.show()
        return exc.exit_code
    except typer.Abort:  # Ctrl-C or Ctrl-D at a prompt: the user's interrupt, not a bug
        _error_line("aborted")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        _debug_traceback(debug)
        _error_line("interrupted")
        return exit_code_for(KeyboardInterrupt())
    except BrokenPipeError:
        # Reader went away (e.g. `| head`): nothing left to tell it.
        _silence_stdout()
        return ExitCode.FAILURE
    except CopytradeError as exc:
        _debug_traceback(debug)
        _error_line(exc.message)
        return exit_code_for(exc)
    except Exception as exc:
        _debug_traceback(debug)
        hint = "" if debug else " (run with --debug for the traceback)"
        _error_line(f"unexpected {type(exc).__name__}: {_one_line(str(exc))}{hint}")
        return ExitCode.FAILURE
    return ExitCode.OK


def _completion_option(args: list[str]) -> tuple[str, str | None] | None:
    """(option, SHELL or None) when a root option asks for completion, else None."""
    # Root options come before the command; SHELL is the word after the option, if any.
    for index, arg in enumerate(args):
        if arg in COMPLETION_OPTIONS:
            shell = next(iter(args[index + 1 : index + 2]), None)
            return arg, None if shell is None or shell.startswith("-") else shell
        if not arg.startswith("-"):
            return None
    return None


def _error_line(message: str) -> None:
    # Error texts quote broker replies and library exceptions: redact before printing.
    # (Imported here: `copytrade --help` need not pay for it.)
    from copytrade.redact import redact

    typer.echo(f"error: {_one_line(redact(message))}", err=True)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _debug_traceback(debug: bool) -> None:
    # A plain traceback: frames and source lines, never local variables; its exception
    # texts come from outside, so it is formatted whole and redacted before it is written.
    if debug:
        from copytrade.redact import redact

        sys.stderr.write(redact(traceback.format_exc()))
        sys.stderr.flush()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the pipe gone that would raise again.
    with contextlib.suppress(OSError, ValueError):  # e.g. stdout has no file descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
