from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import typer
from typer.testing import CliRunner

from copytrade import __version__, errors
from copytrade.cli import app as app_module
from copytrade.cli.app import app, main, run
from copytrade.cli.exit_codes import ExitCode, exit_code_for

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
runner = CliRunner()


def copytrade(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real thing, `python -m copytrade`, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "copytrade", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )


def visible_commands() -> dict[str, typer.main.TyperCommand]:
    group = typer.main.get_command(app)
    return {name: cmd for name, cmd in group.commands.items() if not cmd.hidden}


def walk(command, path: tuple[str, ...] = ("copytrade",)) -> Iterator[tuple[str, object]]:  # type: ignore[no-untyped-def]
    yield " ".join(path), command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from walk(sub, (*path, name))


# --- version and help ---------------------------------------------------------------------


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"copytrade {__version__}\n"


def test_version_as_a_process() -> None:
    result = copytrade("--version")
    assert result.returncode == 0
    assert (result.stdout, result.stderr) == (f"copytrade {__version__}\n", "")


def test_help_lists_only_real_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    listed = out.split("Commands:\n", 1)[1].splitlines()
    names = {line.split()[0] for line in listed if line.startswith("  ") and line.strip()}
    assert names == set(visible_commands()) == {
        "sim", "config", "follow", "cancel-mirror", "replay-missed", "demo", "mappings",
        "stats", "explain", "status", "market-status", "audit", "instruments", "token",
        "bus"}
    assert {"--install-completion", "--show-completion"} <= set(out.split())


def test_no_arguments_prints_help_as_a_usage_error() -> None:
    result = copytrade()
    assert result.returncode == ExitCode.USAGE
    assert "Usage: copytrade" in result.stdout + result.stderr


def test_every_command_and_option_has_help() -> None:
    for path, command in walk(typer.main.get_command(app)):
        assert (command.help or "").strip(), f"{path} has no help text"
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert (param.help or "").strip(), f"{path} {param.opts[0]} has no help text"


def test_every_command_is_documented() -> None:
    doc = CLI_DOC.read_text()
    for path, _command in walk(typer.main.get_command(app)):
        assert f"## `{path}" in doc, f"docs/cli.md has no section for {path}"


def test_help_imports_no_heavy_modules() -> None:
    # Not a timing test: --help must not load what only commands need. Whatever
    # Typer itself imports (older Typer loads Rich) is Typer's cost, not ours.
    probe = (
        "import json, sys\n"
        "heavy = ('rich', 'dhanhq', 'websockets', 'peewee', 'copytrade.sim.server')\n"
        "def loaded():\n"
        "    return {m for m in sys.modules if m in heavy or m.split('.')[0] in heavy}\n"
        "import typer\n"
        "baseline = loaded()\n"
        "from copytrade.cli.app import run\n"
        "run(['--help'])\n"
        "print(json.dumps(sorted(loaded() - baseline)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []


# --- the error funnel ---------------------------------------------------------------------

ERRORS = [
    errors.UsageError("those two options conflict"),
    errors.ConfigError("copytrade.toml: no leader configured"),
    errors.AuthError("access token expired (DH-901)", account="leader"),
    errors.BrokerError("api.dhan.co unreachable"),
    errors.AlreadyRunningError("copytrade follow is already running (pid 42)"),
    errors.StoreError("database is locked"),
]


def funnel_app() -> typer.Typer:
    """A throwaway app with the real root options and commands that fail on purpose."""
    test_app = typer.Typer(add_completion=False, rich_markup_mode=None)
    test_app.callback()(app_module.root)

    @test_app.command(hidden=True)
    def fail(kind: int) -> None:
        raise ERRORS[kind]

    @test_app.command(hidden=True)
    def crash() -> None:
        token = "SECRET" + "-123"  # a secret in a local: must never be printed
        raise RuntimeError(f"kaboom\nsecond line {len(token)}")

    @test_app.command(hidden=True)
    def interrupt() -> None:
        raise KeyboardInterrupt

    return test_app


@pytest.mark.parametrize("kind", range(len(ERRORS)), ids=[type(e).__name__ for e in ERRORS])
def test_expected_errors_print_one_line_and_exit_with_their_code(
    kind: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["fail", str(kind)], typer_app=funnel_app())
    out, err = capsys.readouterr()
    assert code == exit_code_for(ERRORS[kind]) != ExitCode.FAILURE
    assert out == ""
    assert err == f"error: {ERRORS[kind].message}\n"


@pytest.mark.parametrize("debug", [["--debug"], []], ids=["flag", "env"])
def test_debug_shows_the_traceback(
    debug: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not debug:
        monkeypatch.setenv("COPYTRADE_DEBUG", "1")
    code = run([*debug, "fail", "3"], typer_app=funnel_app())
    err = capsys.readouterr().err
    assert code == ExitCode.BROKER
    assert "Traceback (most recent call last)" in err
    assert err.endswith(f"error: {ERRORS[3].message}\n")


def test_an_unexpected_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["crash"], typer_app=funnel_app())
    out, err = capsys.readouterr()
    assert code == ExitCode.FAILURE
    assert out == ""
    assert err == (
        "error: unexpected RuntimeError: kaboom second line 10 "
        "(run with --debug for the traceback)\n"
    )


def test_debug_traceback_never_shows_locals(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--debug", "crash"], typer_app=funnel_app()) == ExitCode.FAILURE
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "SECRET-123" not in err


def test_keyboard_interrupt_exits_130_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["interrupt"], typer_app=funnel_app()) == ExitCode.INTERRUPTED == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_click_usage_errors_keep_clicks_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Usage: copytrade" in err
    assert "No such command 'no-such-command'" in err
    assert "Traceback" not in err


def test_bad_option_value_is_a_usage_error_in_a_real_process() -> None:
    result = copytrade("sim", "--port", "not-a-number")
    assert result.returncode == ExitCode.USAGE
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_exits_with_the_code() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0


# --- copytrade sim, against a stand-in emulator -------------------------------------------


class FakeEmulator:
    """Stands in for copytrade.sim.server.Emulator; start() delivers a signal."""

    instances: ClassVar[list[FakeEmulator]] = []
    signum: int = signal.SIGINT
    start_error: OSError | None = None

    def __init__(self, **options: object) -> None:
        self.options = options
        self.stopped = False
        FakeEmulator.instances.append(self)

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.rest_url = "http://127.0.0.1:18181/v2"
        self.ws_url = "ws://127.0.0.1:18182"
        self.scrip_master_url = "http://127.0.0.1:18181/api-data/api-scrip-master.csv"
        signal.raise_signal(self.signum)  # as if the operator pressed Ctrl-C right away

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fake_emulator(monkeypatch: pytest.MonkeyPatch) -> type[FakeEmulator]:
    module = types.ModuleType("copytrade.sim.server")
    module.Emulator = FakeEmulator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "copytrade.sim.server", module)
    monkeypatch.setattr(FakeEmulator, "instances", [])
    return FakeEmulator


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sim_prints_its_urls_then_stops_cleanly_on_a_signal(
    signum: int,
    fake_emulator: type[FakeEmulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(fake_emulator, "signum", signum)
    before = signal.getsignal(signum)
    code = run(["sim", "--port", "0", "--ws-port", "0", "--funds", "5000", "--seed", "7"])
    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    assert out.splitlines()[:3] == ["REST http://127.0.0.1:18181/v2", "WS ws://127.0.0.1:18182",
                                    "SCRIP http://127.0.0.1:18181/api-data/api-scrip-master.csv"]
    (emulator,) = fake_emulator.instances
    assert emulator.options == {
        "host": "127.0.0.1",
        "rest_port": 0,
        "ws_port": 0,
        "funds": 5000.0,
        "seed": 7,
        "verbose": False,
        "order_rate_scale": 1.0,
        "dialect": "realistic",
    }
    assert emulator.stopped
    assert signal.getsignal(signum) == before


def test_sim_defaults(
    fake_emulator: type[FakeEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["sim"]) == ExitCode.OK
    (emulator,) = fake_emulator.instances
    assert emulator.options == {
        "host": "127.0.0.1",
        "rest_port": 8181,
        "ws_port": 8182,
        "funds": 1_000_000,
        "seed": None,
        "verbose": False,
        "order_rate_scale": 1.0,
        "dialect": "realistic",
    }


def test_sim_port_in_use_is_one_line_not_a_traceback(
    fake_emulator: type[FakeEmulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(fake_emulator, "start_error", OSError(98, "Address already in use"))
    code = run(["sim"])
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: cannot listen on 127.0.0.1")
    assert "Address already in use" in err
    assert fake_emulator.instances[0].stopped
