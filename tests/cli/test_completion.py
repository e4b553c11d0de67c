"""Shell completion: `copytrade --install-completion [SHELL]`, `--show-completion [SHELL]`
and the answers to the requests the installed scripts send (`_COPYTRADE_COMPLETE` set).

HOME is a temporary directory in every test: nothing touches the real rc files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copytrade.cli import app as app_module
from copytrade.cli import completion
from copytrade.cli.app import app, run
from copytrade.cli.exit_codes import ExitCode

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def installed(home: Path, shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(["--install-completion", shell]) == ExitCode.OK
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def completions(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                instruction: str, **env: str) -> list[str]:
    """Answer one completion request in this process, as run() does for the shell."""
    monkeypatch.setenv(app_module.COMPLETE_VAR, instruction)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run([]) == ExitCode.OK
    return [line for line in capsys.readouterr().out.splitlines() if line]


def copytrade_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copytrade", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **env},
        cwd=REPO,
    )


# --- installing ---------------------------------------------------------------------------


def test_bash_gets_a_script_and_one_rc_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = installed(home, "bash", capsys)
    script = home / ".bash_completions" / "copytrade.sh"
    assert out.splitlines()[0] == f"bash completion installed in {script}"
    assert "~/.bashrc" in out
    text = script.read_text()
    assert "complete -o default -F _copytrade_completion copytrade" in text
    assert "_COPYTRADE_COMPLETE=complete_bash" in text
    installed(home, "bash", capsys)  # again: the rc line is not repeated
    assert (home / ".bashrc").read_text().count(f"source '{script}'") == 1
    # What copytrade creates is private: files 0600, directories 0700.
    assert (mode(script), mode(script.parent), mode(home / ".bashrc")) == (0o600, 0o700, 0o600)


def test_zsh_gets_a_function_file_and_compinit(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = installed(home, "zsh", capsys)
    script = home / ".zfunc" / "_copytrade"
    assert out.splitlines()[0] == f"zsh completion installed in {script}"
    text = script.read_text()
    assert text.startswith("#compdef copytrade")
    assert "_TYPER_COMPLETE_ARGS=" in text and "_COPYTRADE_COMPLETE=complete_zsh" in text
    assert "fpath+=~/.zfunc; autoload -Uz compinit; compinit" in (home / ".zshrc").read_text()


def test_an_existing_rc_file_keeps_its_text_and_mode(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bashrc = home / ".bashrc"
    bashrc.write_text("alias ll='ls -l'\n")
    bashrc.chmod(0o644)
    installed(home, "bash", capsys)
    assert bashrc.read_text().startswith("alias ll='ls -l'\n")
    assert "copytrade.sh" in bashrc.read_text()
    assert mode(bashrc) == 0o644


def test_root_options_may_come_first(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--debug", "--install-completion", "ZSH"]) == ExitCode.OK
    assert "zsh completion installed" in capsys.readouterr().out
    assert (home / ".zfunc" / "_copytrade").is_file()


@pytest.mark.parametrize(
    ("detected", "login_shell", "expected"),
    [("zsh", "/bin/bash", "zsh"), (None, "/usr/bin/zsh", "zsh"), (None, "/bin/bash", "bash")],
)
def test_without_a_shell_the_running_one_is_used(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    detected: str | None,
    login_shell: str,
    expected: str,
) -> None:
    import shellingham

    def detect_shell() -> tuple[str, str]:
        if detected is None:
            raise shellingham.ShellDetectionFailure()
        return detected, f"/bin/{detected}"

    monkeypatch.setattr(shellingham, "detect_shell", detect_shell)
    monkeypatch.setenv("SHELL", login_shell)
    assert run(["--install-completion"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith(f"{expected} completion installed in ")


def test_typer_s_own_runner_installs_for_the_running_shell(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not through run(): the Click option's callback, the option alone.
    monkeypatch.setattr(completion, "detect_shell", lambda: "bash")
    result = CliRunner().invoke(app, ["--install-completion"])
    assert result.exit_code == 0
    assert "bash completion installed" in result.output
    assert (home / ".bash_completions" / "copytrade.sh").is_file()


@pytest.mark.parametrize("shell", ["tcsh", "powershell", ""])
def test_an_unsupported_shell_is_one_usage_error_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], shell: str
) -> None:
    assert run(["--install-completion", shell]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no completion for shell ")
    assert captured.err.count("\n") == 1
    assert list(home.iterdir()) == []


def test_an_undetectable_shell_asks_to_name_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shellingham

    def fail() -> tuple[str, str]:
        raise shellingham.ShellDetectionFailure()

    monkeypatch.setattr(shellingham, "detect_shell", fail)
    monkeypatch.delenv("SHELL", raising=False)
    assert run(["--show-completion"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell which shell this is")
    assert "copytrade --install-completion bash" in err


def test_show_prints_the_script_and_installs_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--show-completion", "bash"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "complete -o default -F _copytrade_completion copytrade" in out
    assert list(home.iterdir()) == []


def test_help_lists_the_options_without_loading_completion() -> None:
    probe = (
        "import sys\n"
        "from copytrade.cli.app import run\n"
        "run(['--help'])\n"
        "print('loaded' if 'copytrade.cli.completion' in sys.modules else 'not loaded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT,
        check=True, cwd=REPO,
    )
    assert {"--install-completion", "--show-completion"} <= set(result.stdout.split())
    assert result.stdout.splitlines()[-1] == "not loaded"


def test_the_constants_agree() -> None:
    assert app_module.COMPLETE_VAR == completion.COMPLETE_VAR
    assert app_module.PROG_NAME == completion.PROG_NAME


# --- answering a tab press ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("copytrade f", 1, ["follow"]),
        ("copytrade con", 1, ["config"]),
        ("copytrade market", 1, ["market-status"]),
        ("copytrade config v", 2, ["validate"]),
        ("copytrade config ", 2, ["validate", "show", "init"]),
        ("copytrade --ver", 1, ["--version"]),
        ("copytrade nonsense x", 2, []),
    ],
)
def test_bash_requests(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    words: str,
    cword: int,
    expected: list[str],
) -> None:
    found = completions(
        monkeypatch, capsys, "complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword)
    )
    if len(expected) > 1:
        assert set(expected) <= set(found)
    else:
        assert found == expected


def test_zsh_requests_carry_help_texts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = completions(
        monkeypatch, capsys, "complete_zsh", _TYPER_COMPLETE_ARGS="copytrade config v"
    )
    assert line.startswith("_arguments '*: :((\"validate\":\"")


def test_a_bad_request_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(app_module.COMPLETE_VAR, "complete_tcsh")
    assert run([]) == ExitCode.FAILURE
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "Shell tcsh not supported.\n")


def test_requests_to_a_real_process() -> None:
    bash = copytrade_process(
        {"_COPYTRADE_COMPLETE": "complete_bash", "COMP_WORDS": "copytrade mark",
         "COMP_CWORD": "1"}
    )
    assert (bash.returncode, bash.stdout, bash.stderr) == (0, "market-status\n", "")
    zsh = copytrade_process(
        {"_COPYTRADE_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "copytrade config v"}
    )
    assert zsh.returncode == 0 and '"validate"' in zsh.stdout and zsh.stderr == ""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_installed_script_completes_in_a_real_bash(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    installed(home, "bash", capsys)
    bin_dir = tmp_path / "bin"  # `copytrade` on PATH: this tree, run by this interpreter
    bin_dir.mkdir()
    shim = bin_dir / "copytrade"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m copytrade "$@"\n')
    shim.chmod(0o755)
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "COPYTRADE_HOME": os.environ["COPYTRADE_HOME"],
    }
    # An interactive bash reads ~/.bashrc, whose new line loads the script.
    registered = subprocess.run(
        ["bash", "-i", "-c", "complete -p copytrade"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL,
    )
    registration = "complete -o default -F _copytrade_completion copytrade"
    assert registration in registered.stdout.splitlines(), registered.stderr
    # Press tab after `copytrade config v`: bash calls the function the script defined.
    tab = (
        "source ~/.bash_completions/copytrade.sh\n"
        "COMP_WORDS=(copytrade config v); COMP_CWORD=2\n"
        "_copytrade_completion copytrade\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    pressed = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", tab],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path,
    )
    assert (pressed.returncode, pressed.stdout) == (0, "validate\n"), pressed.stderr
