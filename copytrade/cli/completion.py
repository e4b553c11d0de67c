"""Shell completion: `--install-completion [SHELL]`, `--show-completion [SHELL]`, and the
answers to the completion requests the installed script sends (`_COPYTRADE_COMPLETE` set).

Typer writes the scripts and answers the requests (typer.completion); this module picks the
shell, keeps the files it creates private and reports through run()'s exit codes. app.py
imports it only when completion is asked for, so `copytrade --help` does not pay for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import typer

from copytrade.cli.app import COMPLETE_VAR, PROG_NAME  # run() reads the same variable
from copytrade.errors import UsageError

# PowerShell is left out: Typer's installer runs `Set-ExecutionPolicy Unrestricted`.
SHELLS = ("bash", "zsh", "fish")
RC_FILES = {"bash": "~/.bashrc", "zsh": "~/.zshrc"}


def answer_option(option: str, shell: str | None) -> NoReturn:
    """`--install-completion [SHELL]` or `--show-completion [SHELL]`; exit 0."""
    if option == "--show-completion":
        show(shell)
    install(shell)


def install(requested: str | None) -> NoReturn:
    """Write the completion script and the rc line that loads it; exit 0."""
    from typer.completion import install as typer_install

    shell = resolve_shell(requested)
    # New files 0600, new directories 0700; an existing ~/.bashrc keeps its mode.
    umask = os.umask(0o077)
    try:
        _shell, path = typer_install(shell=shell, prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
    finally:
        os.umask(umask)
    typer.echo(f"{shell} completion installed in {path}")
    loaded_by = f" (loaded from {RC_FILES[shell]})" if shell in RC_FILES else ""
    typer.echo(f"it works in shells started from now on{loaded_by}: open a new terminal")
    raise typer.Exit(0)


def show(requested: str | None) -> NoReturn:
    """Print the completion script, to install by hand; exit 0."""
    from typer.completion import get_completion_script

    shell = resolve_shell(requested)
    typer.echo(get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell))
    raise typer.Exit(0)


def answer_request(command: Any, instruction: str) -> int:
    """Answer one completion request (e.g. `complete_bash`) for the Click command."""
    from typer.completion import completion_init, shell_complete

    completion_init()  # Typer's answer formats: the ones its scripts read
    return shell_complete(command, {}, PROG_NAME, COMPLETE_VAR, instruction)


def resolve_shell(requested: str | None) -> str:
    """The shell named, else the one this command runs under."""
    shell = detect_shell() if requested is None else requested.strip().lower()
    if shell not in SHELLS:
        raise UsageError(f"no completion for shell {shell!r}: name one of {', '.join(SHELLS)}")
    return shell


def detect_shell() -> str:
    """The shell running copytrade: the parent process (shellingham), else $SHELL."""
    name = ""
    try:
        # Comes with Typer; optional here, since naming the shell needs no detection.
        import shellingham

        name, _path = shellingham.detect_shell()
    except (ImportError, OSError):  # ShellDetectionFailure is an OSError
        name = Path(os.environ.get("SHELL", "")).name
    if not name:
        raise UsageError(
            "cannot tell which shell this is: name it, e.g. copytrade --install-completion bash"
        )
    return name
