"""`copytrade config init`: flags, prompts on a terminal, refusals, private files, and a
paper-trading setup that `copytrade follow` runs on at once against the emulator."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner
from waiting import eventually

from copytrade.cli import config_cmd
from copytrade.cli.app import app, run
from copytrade.cli.config_cmd import with_sim_value
from copytrade.cli.exit_codes import ExitCode
from copytrade.config import load_config
from copytrade.config.model import DEFAULT_SIM_API_URL
from copytrade.config.tokens import read_secrets_file
from copytrade.home import write_private_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
TOKEN = "tok-TYPED-AT-PROMPT-4c1d9e"  # distinctive: found anywhere in an output, it leaked
SIM_IDS = ("1000000001", "1000000002", "1000000003")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- --sim --------------------------------------------------------------------------------


@posix_only
def test_sim_alone_writes_a_valid_paper_setup_with_private_files(
        copytrade_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "init", "--sim"]) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    config_file, secrets_file = copytrade_home / "copytrade.toml", copytrade_home / "secrets.toml"
    assert out[0] == f"wrote {config_file}"
    assert out[1].startswith(f"wrote {secrets_file}: tokens of leader, family-1, family-2")
    assert out[2] == "next:"
    assert [line.split("#")[0].strip() for line in out[3:]] == [
        "copytrade sim", "copytrade config validate", "copytrade follow"]
    assert (mode(config_file), mode(secrets_file)) == (0o600, 0o600)
    data = tomllib.loads(config_file.read_text())
    assert data["broker"] == "sim" and "sim" not in data  # the defaults need no [sim]
    assert data["alerts"] == {"webhook_url": "http://127.0.0.1:8181/_sim/alerts"}
    assert sorted(read_secrets_file(secrets_file)) == list(SIM_IDS)
    assert run(["config", "validate"]) == ExitCode.OK
    assert "0 errors, 0 warnings" in capsys.readouterr().out


def test_sim_with_urls_writes_the_sim_table(copytrade_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "init", "--sim", "http://127.0.0.1:40001/v2", "--sim-ws",
                "ws://127.0.0.1:40002", "--leader", "L1", "--follower", "mum=F1"]) == 0
    out = capsys.readouterr().out
    assert "copytrade sim (if not running)" in out
    config = load_config()
    assert config.sim is not None
    assert (config.sim.api_url, config.sim.order_ws_url) == (
        "http://127.0.0.1:40001/v2", "ws://127.0.0.1:40002")
    assert [(f.name, f.account.client_id) for f in config.followers] == [("mum", "F1")]
    assert sorted(read_secrets_file(copytrade_home / "secrets.toml")) == ["F1", "L1"]


def test_a_bare_sim_before_another_option_takes_the_default_url() -> None:
    default = config_cmd.SIM_DEFAULT_URL
    assert default == DEFAULT_SIM_API_URL  # spelled out in the CLI to keep --help light
    assert with_sim_value(["--sim"]) == ["--sim", default]
    assert with_sim_value(["--sim", "--force"]) == ["--sim", default, "--force"]
    assert with_sim_value(["--sim", "http://h:1/v2"]) == ["--sim", "http://h:1/v2"]
    assert with_sim_value(["--leader", "--sim"]) == ["--leader", "--sim", default]
    assert with_sim_value(["--", "--sim"]) == ["--", "--sim"]


def test_sim_then_force_overwrites(copytrade_home: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (copytrade_home / "copytrade.toml").write_text("old")
    assert run(["config", "init", "--sim", "--force"]) == ExitCode.OK
    assert "broker = \"sim\"" in (copytrade_home / "copytrade.toml").read_text()


# --- refusals -----------------------------------------------------------------------------


def test_an_existing_config_is_not_overwritten(copytrade_home: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (copytrade_home / "copytrade.toml").write_text("# mine\n")
    assert run(["config", "init", "--sim"]) == ExitCode.CONFIG
    line = one_error(capsys)
    assert "already exists: not overwritten; pass --force" in line
    assert (copytrade_home / "copytrade.toml").read_text() == "# mine\n"
    assert not (copytrade_home / "secrets.toml").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--leader", "1"], "--follower NAME=CLIENT_ID is missing"),
    (["--follower", "a=2"], "--leader CLIENT_ID is missing"),
    ([], "--leader CLIENT_ID is missing"),
    (["--sim-ws", "ws://127.0.0.1:8182"], "--sim-ws goes with --sim"),
    (["--sim", "ftp://x"], "--sim: expected the emulator's REST URL"),
    (["--leader", "1", "--follower", "a"], "--follower 'a': write NAME=CLIENT_ID"),
    (["--leader", "1", "--follower", "a=1"], "client 1 is already the leader"),
    (["--leader", "1 2", "--follower", "a=2"], "--leader '1 2': a Dhan client id is"),
    (["--sim", "--follower", "a=2", "--follower", "A=3"], "two followers are called 'A'"),
])
def test_a_usage_mistake_is_one_line_exit_2_and_writes_nothing(
        copytrade_home: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        words: str) -> None:
    assert run(["config", "init", *args]) == ExitCode.USAGE  # stdin is not a terminal here
    assert words in one_error(capsys)
    assert list(copytrade_home.iterdir()) == []


def test_there_is_no_way_to_give_a_token_on_the_command_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "init", "--sim", "--token", TOKEN]) == ExitCode.USAGE
    assert "--token" in capsys.readouterr().err


@posix_only
def test_an_unsafe_secrets_file_is_refused_before_anything_is_written(
        copytrade_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = copytrade_home / "secrets.toml"
    secrets.write_text("[tokens]\n")
    secrets.chmod(0o644)
    assert run(["config", "init", "--sim"]) == ExitCode.CONFIG
    assert "chmod 600" in one_error(capsys)
    assert not (copytrade_home / "copytrade.toml").exists()


def test_other_tokens_in_the_secrets_file_are_kept(copytrade_home: Path) -> None:
    write_private_file(copytrade_home / "secrets.toml", '[tokens]\n"7" = "tok-OTHER-ACCOUNT-77"\n')
    assert run(["config", "init", "--sim"]) == ExitCode.OK
    assert sorted(read_secrets_file(copytrade_home / "secrets.toml")) == sorted(["7", *SIM_IDS])


def test_a_stand_in_never_replaces_a_token_the_home_has(
        copytrade_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Paper trading with a live account's id, beside its live setup: the live token stays
    (a running follow would pick a stand-in up, and Dhan refuse it)."""
    live = "tok-LIVE-ACCOUNT-TOKEN-91ab"
    write_private_file(copytrade_home / "secrets.toml", f'[tokens]\n"1100012345" = "{live}"\n')
    paper = tmp_path / "paper.toml"
    assert run(["config", "init", "--sim", "--leader", "1100012345", "--config",
                str(paper)]) == ExitCode.OK
    out = capsys.readouterr().out
    tokens = {key: value.reveal()
              for key, value in read_secrets_file(copytrade_home / "secrets.toml").items()}
    assert tokens["1100012345"] == live
    assert sorted(tokens) == ["1000000002", "1000000003", "1100012345"]
    assert f"kept the tokens {copytrade_home / 'secrets.toml'} has for leader" in out
    assert "tokens of family-1, family-2 (stand-ins" in out
    assert "token set" not in out and live not in out


def test_config_path_is_written_and_named_in_the_next_commands(
        copytrade_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "paper.toml"
    assert run(["config", "init", "--leader", "1", "--follower", "a=2",
                "--config", str(target)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"copytrade follow --config {target}" in out
    assert f"copytrade token set leader --config {target}" in out
    assert load_config(target).broker == "dhan"
    assert not (copytrade_home / "copytrade.toml").exists()


def test_each_next_command_runs_as_pasted_into_a_shell(
        copytrade_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a path long enough to reach the comments" / "paper.toml"
    assert run(["config", "init", "--leader", "1", "--follower", "mum=2",
                "--config", str(target)]) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    # A shell starts a comment only at a word's start: the "#" needs a space before it.
    commands = [shlex.split(line.partition(" # ")[0]) for line in out[out.index("next:") + 1:]]
    option = ["--config", str(target)]
    assert commands == [["copytrade", "token", "set", "leader", *option],
                        ["copytrade", "token", "set", "mum", *option],
                        ["copytrade", "config", "validate", *option],
                        ["copytrade", "follow", *option]]


def test_without_tokens_the_next_commands_say_to_set_them(
        copytrade_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "init", "--leader", "1", "--follower", "mum=2"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "copytrade token set leader" in out and "copytrade token set mum" in out
    assert "copytrade sim" not in out
    assert not (copytrade_home / "secrets.toml").exists()


# --- on a terminal ------------------------------------------------------------------------


@posix_only
def test_on_a_terminal_it_asks_for_what_flags_left_out(
        copytrade_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_cmd, "_stdin_is_terminal", lambda: True)
    answers = [
        "bad id!", "1000000001",  # the leader (refused once)
        "mum", "1000000001", "1000000002", "200", "0.5",  # a follower: id taken, bad multiplier
        "mum", "dad", "1000000003", "",  # a second: name taken; multiplier by default
        "",  # no third
        "short", TOKEN,  # the leader's token: malformed, then good
        "", "",  # the followers': later
    ]
    result = CliRunner().invoke(app, ["config", "init"], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "short" not in result.output
    config = load_config()
    assert config.leader.client_id == "1000000001"
    assert [(f.name, f.account.client_id, f.sizing.value) for f in config.followers] == [
        ("mum", "1000000002", 0.5), ("dad", "1000000003", 1.0)]
    secrets = copytrade_home / "secrets.toml"
    assert {k: v.reveal() for k, v in read_secrets_file(secrets).items()} == {
        "1000000001": TOKEN}
    assert mode(secrets) == 0o600
    assert "copytrade token set mum" in result.output
    assert "copytrade token set leader" not in result.output


def test_on_a_terminal_flags_are_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_cmd, "_stdin_is_terminal", lambda: True)
    result = CliRunner().invoke(app, ["config", "init", "--leader", "1", "--follower", "a=2"],
                                input="\n\n")
    assert result.exit_code == 0, result.output
    assert "client id" not in result.output  # only the two (skipped) tokens were asked
    assert result.output.count("Access token of") == 2


# --- end to end: the emulator, config init --sim, follow ----------------------------------


def test_follow_runs_at_once_on_what_config_init_sim_wrote(
        copytrade_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from copytrade.sim.server import Emulator

    with Emulator(seed=3, dialect="realistic") as sim:  # as `copytrade sim` starts it
        assert run(["config", "init", "--sim", sim.rest_url, "--sim-ws", sim.ws_url]) == 0
        assert run(["config", "validate"]) == ExitCode.OK
        capsys.readouterr()
        env = {k: v for k, v in os.environ.items()
               if k != "COPYTRADE_DEBUG" and not k.startswith("DHAN_TOKEN_")}
        proc = subprocess.Popen([sys.executable, "-m", "copytrade", "follow", "--duration", "60"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            def following() -> bool:
                assert proc.poll() is None, proc.communicate(timeout=10)
                connections = sim.snapshot()["stream"]["connections"]
                return all(connections.get(cid, 0) >= 1 for cid in SIM_IDS)

            eventually(following, timeout=30, interval=0.05)
            sim.app_place(SIM_IDS[0], {
                "transactionType": "BUY", "exchangeSegment": "NSE_EQ", "productType": "CNC",
                "orderType": "MARKET", "validity": "DAY", "securityId": "1333", "quantity": 10,
                "price": 0})

            def quantities() -> list[list[int]]:
                accounts = sim.snapshot()["accounts"]
                return [[o["quantity"] for o in accounts.get(cid, {}).get("orders", [])]
                        for cid in SIM_IDS[1:]]

            eventually(lambda: quantities() == [[10], [20]], timeout=15, interval=0.05)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
    assert proc.returncode == 0, err
