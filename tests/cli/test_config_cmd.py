from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copytrade.cli.app import app, run
from copytrade.cli.exit_codes import ExitCode
from copytrade.config import load_config
from copytrade.home import write_private_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

# Distinctive, so a leak anywhere in the output is found by a substring search.
LEADER_TOKEN = "tok-LEADER-91be3f"
F1_TOKEN = "tok-FAMILY1-0c7d52"
F2_TOKEN = "tok-FAMILY2-e64a18"

CONFIG = """
[leader]
client_id = "1000000001"
access_token_env = "DHAN_LEADER_TOKEN"

[[followers]]
name = "family-1"
client_id = "1000000002"
access_token_env = "DHAN_F1_TOKEN"
multiplier = 0.5
source_address = "192.0.2.11"
allow_segments = ["NSE_EQ", "NSE_FNO"]
max_order_value = 100000

[[followers]]
name = "family-2"
client_id = "1000000003"
fixed_lots = 2
proxy = "http://user:hunter2@proxy.example:3128"
shadow = true

[settings]
freeze_limits = { "1333" = 1800 }
"""


@pytest.fixture
def home_config(copytrade_home: Path) -> Path:
    path = copytrade_home / "copytrade.toml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


@pytest.fixture
def tokens(copytrade_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leader and family-1 from the environment, family-2 from the secrets file."""
    monkeypatch.setenv("DHAN_LEADER_TOKEN", LEADER_TOKEN)
    monkeypatch.setenv("DHAN_F1_TOKEN", F1_TOKEN)
    write_private_file(copytrade_home / "secrets.toml", f'[tokens]\n"1000000003" = "{F2_TOKEN}"\n')


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def assert_no_secret(text: str) -> None:
    for secret in (LEADER_TOKEN, F1_TOKEN, F2_TOKEN, "hunter2"):
        assert secret not in text


# --- config validate ----------------------------------------------------------------------


@pytest.mark.usefixtures("tokens")
def test_validate_a_good_config_exits_0(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "validate"]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert (out, err) == (
        f"{home_config}: 0 errors, 0 warnings; ok: 1 leader, 2 of 2 followers enabled\n",
        "",
    )


@pytest.mark.usefixtures("tokens")
def test_validate_with_warnings_only_exits_0(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(home_config, "max_order_value = 100000", 'deny_security_ids = ["INFY"]')
    assert run(["config", "validate"]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "warning: followers[0] (family-1).deny_security_ids: 'INFY' does not look like a Dhan "
        "security id (digits, from the instrument list)",
        f"{home_config}: 0 errors, 1 warning; ok: 1 leader, 2 of 2 followers enabled",
    ]


def test_validate_with_errors_prints_each_and_exits_3(
    home_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHAN_LEADER_TOKEN", LEADER_TOKEN)
    edit(home_config, '"NSE_FNO"]', '"NSE_FO"]\ndeny_segments = ["NSE_EQ"]')
    assert run(["config", "validate"]) == ExitCode.CONFIG == 3
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "error: followers[0] (family-1): no access token for client 1000000002: set the "
        'environment variable DHAN_F1_TOKEN, or add "1000000002" = "<token>" under [tokens] '
        f"in {home_config.parent / 'secrets.toml'}",
        "error: followers[0] (family-1).allow_segments: unknown name 'NSE_FO' (did you mean "
        "'NSE_FNO'?)",
        "error: followers[0] (family-1).deny_segments: NSE_EQ is in both allow_segments and "
        "deny_segments",
        "error: followers[1] (family-2): no access token for client 1000000003: set the "
        'environment variable DHAN_TOKEN_1000000003, or add "1000000003" = "<token>" under '
        f"[tokens] in {home_config.parent / 'secrets.toml'}",
    ]
    assert err == f"error: {home_config}: 4 errors, 0 warnings\n"
    assert_no_secret(out + err)


def test_validate_a_structural_mistake_is_one_line_and_exit_3(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(home_config, "multiplier", "multipler")
    assert run(["config", "validate"]) == ExitCode.CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "error: copytrade.toml: followers[0] (family-1).multipler: unknown key "
        "(did you mean 'multiplier'?)\n"
    )


def test_validate_without_a_config_file_says_where_it_looked(
    copytrade_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "validate"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"error: no file at {copytrade_home / 'copytrade.toml'}; write one "
                          "with `copytrade config init --sim`")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("tokens")
def test_validate_reads_the_file_given_with_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "paper.toml"
    elsewhere.write_text(textwrap.dedent(CONFIG))
    assert run(["config", "validate", "--config", str(elsewhere)]) == ExitCode.OK
    assert capsys.readouterr().out.startswith(f"{elsewhere}: 0 errors")


@posix_only
@pytest.mark.usefixtures("tokens")
def test_validate_refuses_a_readable_secrets_file(
    home_config: Path, copytrade_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = copytrade_home / "secrets.toml"
    secrets.chmod(0o644)
    assert run(["config", "validate"]) == ExitCode.CONFIG
    out, err = capsys.readouterr()
    assert out == (
        f"error: secrets.toml: {secrets} is accessible to other users (mode 0644); "
        f"it holds secrets, so run: chmod 600 {secrets}\n"
    )
    assert err == f"error: {home_config}: 1 error, 0 warnings\n"


def test_validate_through_click_runner(home_config: Path) -> None:
    # Typer's own runner, without the funnel: the ConfigError surfaces as the exception.
    result = CliRunner().invoke(app, ["config", "validate"])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"


# --- config show --------------------------------------------------------------------------


@pytest.mark.usefixtures("tokens")
def test_show_never_prints_a_token(home_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "show"]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert_no_secret(out + err)
    assert "# token: set (env DHAN_LEADER_TOKEN)" in out
    assert "# token: set (env DHAN_F1_TOKEN)" in out
    assert "# token: set (secrets file)" in out
    assert 'proxy = "http://user:***@proxy.example:3128"' in out


@pytest.mark.usefixtures("tokens")
def test_show_json_never_prints_a_token(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "show", "--json"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert_no_secret(out)
    data = json.loads(out)
    assert data["source"] == str(home_config)
    assert [f["token"] for f in data["followers"]] == [
        "set (env DHAN_F1_TOKEN)",
        "set (secrets file)",
    ]
    assert data["leader"]["token"] == "set (env DHAN_LEADER_TOKEN)"
    assert data["followers"][1]["fixed_lots"] == 2
    assert data["settings"]["freeze_limits"] == {"1333": 1800}


def test_show_marks_missing_tokens(home_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "show"]) == ExitCode.OK
    assert capsys.readouterr().out.count("# token: MISSING") == 3


def test_show_output_is_a_valid_config_with_the_same_meaning(
    home_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "show"]) == ExitCode.OK
    shown = tmp_path / "shown.toml"
    # The proxy password is masked in the output, so put the real one back to compare.
    shown.write_text(capsys.readouterr().out.replace("user:***@", "user:hunter2@"))
    original, reloaded = load_config(home_config), load_config(shown)
    assert reloaded.followers == original.followers
    assert (reloaded.leader, reloaded.settings) == (original.leader, original.settings)


def test_show_with_a_bad_config_exits_3(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home_config.write_text("[leader\n")
    assert run(["config", "show", "--json"]) == ExitCode.CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {home_config}: invalid TOML: ")


def test_config_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert "validate" in captured.out + captured.err
    assert "show" in captured.out + captured.err


# --- broker, [sim] and [alerts] (issue 11) ------------------------------------------------

SIM_CONFIG = """
broker = "sim"

[sim]
api_url = "http://127.0.0.1:40001/v2"

[leader]
client_id = "1000000001"
access_token_env = "DHAN_LEADER_TOKEN"

[[followers]]
name = "family-1"
client_id = "1000000002"
access_token_env = "DHAN_F1_TOKEN"
multiplier = 1.0

[[followers]]
name = "family-2"
client_id = "1000000003"
multiplier = 2.0

[alerts]
webhook_url = "https://api.telegram.org/bot12345:AAH-hook-secret/sendMessage"
fields = { chat_id = "-1001234567890" }
"""


@pytest.mark.usefixtures("tokens")
def test_validate_a_sim_config_has_no_egress_warning(
    home_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home_config.write_text(textwrap.dedent(SIM_CONFIG))
    assert run(["config", "validate"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith(f"{home_config}: 0 errors, 0 warnings; ok: ")


def test_show_prints_broker_sim_and_alerts_masked(
    home_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home_config.write_text(textwrap.dedent(SIM_CONFIG))
    assert run(["config", "show"]) == ExitCode.OK
    toml_out = capsys.readouterr().out
    assert run(["config", "show", "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    for text in (toml_out, json.dumps(data)):
        assert "hook-secret" not in text and "sendMessage" not in text
    assert data["broker"] == "sim"
    assert data["sim"]["api_url"] == "http://127.0.0.1:40001/v2"
    assert data["sim"]["order_ws_url"] == "ws://127.0.0.1:8182"  # the default, filled in
    assert data["alerts"]["webhook_url"] == "https://api.telegram.org/…"
    assert data["leader"]["api_url"] == "http://127.0.0.1:40001/v2"
    assert 'broker = "sim"' in toml_out.splitlines()
    # the TOML form is still a copytrade.toml with the same accounts
    shown = tmp_path / "shown.toml"
    shown.write_text(toml_out)
    original, reloaded = load_config(home_config), load_config(shown)
    assert (reloaded.broker, reloaded.sim) == (original.broker, original.sim)
    assert reloaded.followers == original.followers
    assert dict(reloaded.alerts.fields) == {"chat_id": "-1001234567890"}
