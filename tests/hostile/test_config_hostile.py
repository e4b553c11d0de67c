"""Hostile configuration values (issue 7, rows 6 and 11).

Each is refused when the configuration is read or validated, in one line naming the
key and what is wrong, so `copytrade config validate` exits 3 instead of `follow`
dying later; and no token, nor any piece or character of one, is ever printed.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copytrade.cli.app import run
from copytrade.cli.exit_codes import ExitCode
from copytrade.config import (
    RANGES,
    TOKEN_LENGTH,
    Config,
    Problem,
    load_config,
    require_valid,
    resolve_tokens,
    token_sources,
    validate,
)
from copytrade.errors import ConfigError
from copytrade.home import home_paths, write_private_file

# Random-looking, JWT-shaped and distinctive: any 6 characters of it found in an
# output can only have come from the token.
TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4cTdaIn0.Zq7xW2kPv9Lm4Rt8Yb3Nc6Hd1Fg5Js0Q"
F1_TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJmMXRrIn0.Wp3Kd8sVn2Bx6Qm1Tz5Ry9Lc4Hg7Fj0U"
ENV = {"DHAN_LEADER_TOKEN": TOKEN, "DHAN_F1_TOKEN": F1_TOKEN}
F1 = "followers[0] (f1)"
RULE = (
    "a Dhan access token is 16 to 4096 printable ASCII characters without spaces: "
    "copy it again (it is not shown here)"
)


def config_text(
    leader: str = "", follower: str = "", settings: str = "", sizing: str = "multiplier = 1.0"
) -> str:
    """One leader and one follower, clean: validate() finds nothing with ENV's tokens."""
    return (
        '[leader]\nclient_id = "1000000001"\naccess_token_env = "DHAN_LEADER_TOKEN"\n'
        f"{leader}\n\n"
        '[[followers]]\nname = "f1"\nclient_id = "1000000002"\n'
        f'access_token_env = "DHAN_F1_TOKEN"\nsource_address = "192.0.2.11"\n{sizing}\n'
        f"{follower}\n\n[settings]\n{settings}\n"
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.toml"


def load(config_file: Path, text: str) -> Config:
    config_file.write_text(text)
    return load_config(config_file)


def load_error(config_file: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(config_file, text)
    message = raised.value.message
    assert "\n" not in str(raised.value)
    assert message.startswith("copytrade.toml: ")
    return message.removeprefix("copytrade.toml: ")


def assert_no_token_in(text: str, token: str = TOKEN) -> None:
    """Not the token, not any 6 characters of it, not one of its odd characters (but space)."""
    windows = {token[i : i + 6] for i in range(len(token) - 5)}
    assert not [window for window in windows if window in text]
    assert not [char for char in set(token) if not " " <= char <= "~" and char in text]


# --- row 11: every number has a range -----------------------------------------------------

# (table, TOML line, the error after "copytrade.toml: ")
NUMBERS = [
    (
        "settings",
        "reconcile_interval_seconds = 1e300",
        "settings.reconcile_interval_seconds: must be from 0.25 to 3,600, not 1e+300",
    ),
    (
        "settings",
        "reconcile_interval_seconds = 0.01",
        "settings.reconcile_interval_seconds: must be from 0.25 to 3,600, not 0.01",
    ),
    (
        "settings",
        "reconcile_interval_seconds = nan",
        "settings.reconcile_interval_seconds: must be a finite number",
    ),
    (
        "settings",
        "http_timeout_seconds = 1e300",
        "settings.http_timeout_seconds: must be from 0.5 to 120, not 1e+300",
    ),
    (
        "settings",
        "http_timeout_seconds = -5",
        "settings.http_timeout_seconds: must be from 0.5 to 120, not -5",
    ),
    (
        "settings",
        "http_timeout_seconds = 0.1",
        "settings.http_timeout_seconds: must be from 0.5 to 120, not 0.1",
    ),
    ("settings", "http_timeout_seconds = [5]", "settings.http_timeout_seconds: must be a number"),
    (
        "settings",
        "http_timeout_seconds = 1979-05-27",
        "settings.http_timeout_seconds: must be a number",
    ),
    (
        "settings",
        "order_rate_scale = 0",
        "settings.order_rate_scale: must be from 0.001 to 1,000, not 0",
    ),
    (
        "settings",
        "order_rate_scale = 1e6",
        "settings.order_rate_scale: must be from 0.001 to 1,000, not 1000000.0",
    ),
    ("settings", "order_rate_scale = inf", "settings.order_rate_scale: must be a finite number"),
    (
        "settings",
        "freeze_limits = { 1333 = 0 }",
        "settings.freeze_limits.1333: must be a whole number of units from 1 to 10,000,000, not 0",
    ),
    (
        "settings",
        "freeze_limits = { 1333 = 1e9 }",
        "settings.freeze_limits.1333: must be a whole number of units from 1 to 10,000,000, "
        "not 1000000000.0",
    ),
    (
        "settings",
        "freeze_limits = { 1333 = 9223372036854775807 }",
        "settings.freeze_limits.1333: must be a whole number of units from 1 to 10,000,000, "
        "not 9223372036854775807",
    ),
    (
        "sizing",
        "multiplier = 1e9",
        f"{F1}.multiplier: must be from 0.01 to 100, not 1000000000.0",
    ),
    ("sizing", "multiplier = 1e-9", f"{F1}.multiplier: must be from 0.01 to 100, not 1e-09"),
    ("sizing", "multiplier = -1", f"{F1}.multiplier: must be from 0.01 to 100, not -1"),
    ("sizing", "multiplier = -inf", f"{F1}.multiplier: must be a finite number"),
    ("sizing", "multiplier = true", f"{F1}.multiplier: must be a number"),
    ("sizing", 'multiplier = "nan"', f"{F1}.multiplier: must be a number"),
    (
        "sizing",
        "fixed_lots = 1e9",
        f"{F1}.fixed_lots: must be a whole number of lots from 1 to 100,000, not 1000000000.0",
    ),
    (
        "sizing",
        "fixed_lots = -2",
        f"{F1}.fixed_lots: must be a whole number of lots from 1 to 100,000, not -2",
    ),
    (
        "sizing",
        "fixed_lots = nan",
        f"{F1}.fixed_lots: must be a whole number of lots from 1 to 100,000, not nan",
    ),
    (
        "sizing",
        'fixed_lots = "2"',
        f"{F1}.fixed_lots: must be a whole number of lots from 1 to 100,000, not a string",
    ),
    (
        "follower",
        "max_quantity = 9223372036854775807",
        f"{F1}.max_quantity: must be a whole number from 1 to 10,000,000, not 9223372036854775807",
    ),
    (
        "follower",
        "max_quantity = -5",
        f"{F1}.max_quantity: must be a whole number from 1 to 10,000,000, not -5",
    ),
    (
        "follower",
        "max_quantity = inf",
        f"{F1}.max_quantity: must be a whole number from 1 to 10,000,000, not inf",
    ),
    (
        "follower",
        "max_order_value = 1e300",
        f"{F1}.max_order_value: must be from 1 to 1,000,000,000, not 1e+300",
    ),
    (
        "follower",
        "max_order_value = -1",
        f"{F1}.max_order_value: must be from 1 to 1,000,000,000, not -1",
    ),
    ("follower", "max_order_value = nan", f"{F1}.max_order_value: must be a finite number"),
    (
        "follower",
        "max_order_age_seconds = 0",
        f"{F1}.max_order_age_seconds: must be from 1 to 86,400, not 0",
    ),
    (
        "follower",
        "max_order_age_seconds = 1e9",
        f"{F1}.max_order_age_seconds: must be from 1 to 86,400, not 1000000000.0",
    ),
    (
        "follower",
        "max_price_drift_percent = 500",
        f"{F1}.max_price_drift_percent: must be from 0 to 100, not 500",
    ),
    (
        "follower",
        "max_price_drift_percent = -0.5",
        f"{F1}.max_price_drift_percent: must be from 0 to 100, not -0.5",
    ),
]


def text_with(table: str, line: str) -> str:
    if table == "sizing":
        return config_text(sizing=line)
    return config_text(**{table: line})


@pytest.mark.parametrize("table, line, expected", NUMBERS, ids=[line for _, line, _ in NUMBERS])
def test_a_number_out_of_range_is_one_line_naming_key_and_range(
    config_file: Path, table: str, line: str, expected: str
) -> None:
    assert load_error(config_file, text_with(table, line)) == expected


@pytest.mark.parametrize(
    "line",
    [f'max_quantity = "{TOKEN}"', f'fixed_lots = "{TOKEN}"', f'multiplier = ["{TOKEN}"]'],
    ids=["max_quantity", "fixed_lots", "multiplier"],
)
def test_a_token_pasted_into_a_number_is_not_echoed(config_file: Path, line: str) -> None:
    table = "follower" if line.startswith("max_quantity") else "sizing"
    assert_no_token_in(load_error(config_file, text_with(table, line)))


def test_every_default_is_within_its_range(config_file: Path) -> None:
    config = load(config_file, config_text())
    follower = config.followers[0]
    defaults = {
        "reconcile_interval_seconds": config.settings.reconcile_interval_seconds,
        "http_timeout_seconds": config.settings.http_timeout_seconds,
        "order_rate_scale": config.settings.order_rate_scale,
        "max_order_age_seconds": follower.max_order_age_seconds,
        "max_price_drift_percent": follower.max_price_drift_percent,
    }
    for key, value in defaults.items():
        low, high = RANGES[key]
        assert low <= value <= high, key


@pytest.mark.parametrize("key", sorted(RANGES))
def test_both_ends_of_every_range_load(config_file: Path, key: str) -> None:
    for bound in RANGES[key]:
        line = f"{key} = {toml_number(key, bound)}"
        config = load(config_file, numeric_text(key, line))
        assert loaded_value(config, key) == bound


CONFIG_DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize("key", sorted(RANGES))
def test_the_documentation_gives_each_range_next_to_its_key(key: str) -> None:
    low, high = RANGES[key]
    words = f"{bound_text(low)} to {bound_text(high)}"
    # A table's key ("alerts.retries") is documented in its table's section by its name.
    table, _dot, name = key.rpartition(".")
    text = CONFIG_DOC.read_text()
    if table:
        text = text.split(f"## `[{table}]`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if f"`{name}" in line]
    assert any(words in row for row in rows), f"{key}: {words!r} not in its docs row"


# --- hypothesis: any float loads within range or is a ConfigError, nothing else -----------

INTEGER_KEYS = ("max_quantity", "freeze_limits", "max_orders_per_second", "alerts.retries")
SETTINGS_KEYS = ("reconcile_interval_seconds", "http_timeout_seconds", "order_rate_scale",
                 "renew_before_minutes", "max_orders_per_second")


def toml_number(key: str, value: float) -> str:
    if key in INTEGER_KEYS or key == "fixed_lots":
        return str(int(value))
    return repr(float(value))  # "inf", "nan", "1e+300": TOML writes them the same way


def numeric_text(key: str, line: str) -> str:
    """A clean config with `line` (setting `key`) in the right table."""
    if key == "freeze_limits":
        return config_text(settings=line.replace(" = ", " = { 1333 = ") + " }")
    if key.startswith("alerts."):  # a dotted key before the first table: [alerts]'s
        return f"{line}\n{config_text()}"
    if key in SETTINGS_KEYS:
        return config_text(settings=line)
    if key in {"multiplier", "fixed_lots"}:
        return config_text(sizing=line)
    return config_text(follower=line)


def loaded_value(config: Config, key: str) -> float:
    follower = config.followers[0]
    if key == "freeze_limits":
        return config.settings.freeze_limits["1333"]
    if key.startswith("alerts."):
        return getattr(config.alerts, key.removeprefix("alerts."))
    if key in {"multiplier", "fixed_lots"}:
        return follower.sizing.value
    if key in SETTINGS_KEYS:
        return getattr(config.settings, key)
    return getattr(follower, key)


def bound_text(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(key=st.sampled_from(sorted(RANGES)), value=st.floats() | st.integers(-(2**63), 2**63 - 1))
def test_any_number_loads_within_its_range_or_is_a_config_error(
    config_file: Path, key: str, value: float
) -> None:
    literal = str(value) if isinstance(value, int) else repr(value)
    line = f"{key} = {literal}"
    try:
        config = load(config_file, numeric_text(key, line))
    except ConfigError as error:
        assert "\n" not in error.message
        # "followers[0] (f1).max_quantity", "settings.freeze_limits.1333", "alerts.retries"
        assert re.search(rf"[ .]{re.escape(key)}[.:]", error.message)
        return
    loaded = loaded_value(config, key)
    low, high = RANGES[key]
    assert math.isfinite(loaded)
    assert low <= loaded <= high
    assert loaded == value


# --- row 11: URLs -------------------------------------------------------------------------

URLS = [
    # (table, TOML line, where, message)
    (
        "follower",
        'order_ws_url = "ws://host:"',
        f"{F1}.order_ws_url",
        "no port number after ':' in 'ws://host:'; give a port from 1 to 65535",
    ),
    (
        "leader",
        'api_url = "https://api.dhan.co:/v2"',
        "leader.api_url",
        "no port number after ':' in 'https://api.dhan.co:/v2'; give a port from 1 to 65535",
    ),
    (
        "leader",
        'order_ws_url = "wss://[::1]:"',
        "leader.order_ws_url",
        "no port number after ':' in 'wss://[::1]:'; give a port from 1 to 65535",
    ),
    (
        "leader",
        'api_url = "https://api.dhan.co:0/v2"',
        "leader.api_url",
        "port 0 in 'https://api.dhan.co:0/v2'; give a port from 1 to 65535",
    ),
    (
        "leader",
        'api_url = "https://api.dhan.co:65536/v2"',
        "leader.api_url",
        "not a valid URL: 'https://api.dhan.co:65536/v2'",
    ),
    (
        "leader",
        'api_url = "https://api.dhan.co:-443/v2"',
        "leader.api_url",
        "not a valid URL: 'https://api.dhan.co:-443/v2'",
    ),
    (
        "leader",
        'api_url = "https://api.dhan .co/v2"',
        "leader.api_url",
        "contains a space or control character at position 17",
    ),
    (
        "follower",
        'order_ws_url = "wss://api-order-update.dhan.co/\\u0007"',
        f"{F1}.order_ws_url",
        "contains a space or control character at position 32",
    ),
    (
        "settings",
        'instruments_url = "https://images.dhan.co/\\tx.csv"',
        "settings.instruments_url",
        "contains a space or control character at position 24",
    ),
    (
        "settings",
        'instruments_url = "https:///x.csv"',
        "settings.instruments_url",
        "must be a https:// (or http://) URL with a host, not 'https:///x.csv'",
    ),
    (
        "settings",
        'instruments_url = "wss://images.dhan.co/x.csv"',
        "settings.instruments_url",
        "must be a https:// (or http://) URL with a host, not 'wss://images.dhan.co/x.csv'",
    ),
    (
        "leader",
        'api_url = "wss://api.dhan.co/v2"',
        "leader.api_url",
        "must be a https:// (or http://) URL with a host, not 'wss://api.dhan.co/v2'",
    ),
    (
        "follower",
        'order_ws_url = "https://api-order-update.dhan.co"',
        f"{F1}.order_ws_url",
        "must be a wss:// (or ws://) URL with a host, not 'https://api-order-update.dhan.co'",
    ),
]


@pytest.mark.parametrize(
    "table, line, where, message", URLS, ids=[line.split(" = ")[1] for _, line, _, _ in URLS]
)
def test_a_bad_url_is_one_problem_naming_the_key(
    config_file: Path, table: str, line: str, where: str, message: str
) -> None:
    problems = validate(load(config_file, config_text(**{table: line})), ENV)
    assert problems == [Problem("error", where, message)]


@pytest.mark.parametrize(
    "proxy, message",
    [
        (
            "http://u:hunter2@p.example:",
            "no port number after ':' in 'http://u:***@p.example:'; give a port from 1 to 65535",
        ),
        (
            "socks5://u:hunter2@p.example:1080",
            "must be a https:// (or http://) URL with a host, not 'socks5://u:***@p.example:1080'",
        ),
        (
            "http://u:hunter2@p .example:3128",
            "contains a space or control character at position 19",
        ),
    ],
)
def test_a_bad_proxy_is_refused_without_its_password(
    config_file: Path, proxy: str, message: str
) -> None:
    text = config_text(follower=f'proxy = "{proxy}"').replace('source_address = "192.0.2.11"\n', "")
    problems = validate(load(config_file, text), ENV)
    assert problems == [Problem("error", f"{F1}.proxy", message)]


def test_each_bad_url_is_its_own_line(config_file: Path) -> None:
    text = config_text(
        leader='order_ws_url = "ws://host:"',
        follower='api_url = "https://api.dhan.co:0/v2"',
        settings='instruments_url = "https://x y"',
    )
    problems = validate(load(config_file, text), ENV)
    assert [p.where for p in problems] == [
        "leader.order_ws_url",
        f"{F1}.api_url",
        "settings.instruments_url",
    ]
    with pytest.raises(ConfigError, match=r"^leader\.order_ws_url: no port .*\(and 2 more; run"):
        require_valid(load(config_file, text), ENV)


# --- row 6: tokens ------------------------------------------------------------------------

# (the token as it reaches copytrade, what is wrong with it)
BAD_TOKENS = [
    (TOKEN[:17] + "\x07" + TOKEN[17:], "contains a control character at position 18"),
    (TOKEN[:30] + "\x1b[31m" + TOKEN[30:], "contains a control character at position 31"),
    (TOKEN[:40] + "\n" + TOKEN[40:], "contains a control character at position 41"),
    (TOKEN[:5] + "\x7f" + TOKEN[5:], "contains a control character at position 6"),
    (TOKEN[:8] + "\x85" + TOKEN[8:], "contains a control character at position 9"),
    (TOKEN[:20] + " " + TOKEN[20:], "contains a space at position 21"),
    (TOKEN[:20] + "\u00a0" + TOKEN[20:], "contains a space at position 21"),
    (TOKEN[:3] + "é" + TOKEN[3:], "contains a character that is not printable ASCII at position 4"),
    (
        TOKEN[:9] + "\u200b" + TOKEN[9:],
        "contains a character that is not printable ASCII at position 10",
    ),
    (
        TOKEN[:50] + "\u202e" + TOKEN[50:],
        "contains a character that is not printable ASCII at position 51",
    ),
    ("9876543210", "is 10 characters long"),  # e.g. a client id pasted instead
    (TOKEN[:15], "is 15 characters long"),
    (TOKEN * 60, f"is {len(TOKEN) * 60} characters long"),
]


def toml_string(value: str) -> str:
    """A TOML basic string, control and non-ASCII characters escaped."""
    escaped = "".join(
        char if " " <= char <= "~" and char not in '"\\' else f"\\u{ord(char):04x}"
        for char in value
    )
    return f'"{escaped}"'


@pytest.mark.parametrize("token, problem", BAD_TOKENS, ids=[p for _, p in BAD_TOKENS])
def test_a_malformed_token_in_the_environment_is_refused_unquoted(
    config_file: Path, token: str, problem: str
) -> None:
    config = load(config_file, config_text())
    environ = {**ENV, "DHAN_LEADER_TOKEN": token}
    message = f"the access token in the environment variable DHAN_LEADER_TOKEN {problem}; {RULE}"
    assert validate(config, environ) == [Problem("error", "leader", message)]
    for call in (resolve_tokens, token_sources, require_valid):
        with pytest.raises(ConfigError) as raised:
            call(config, environ)
        assert raised.value.message == f"leader: {message}"
        assert_no_token_in(raised.value.message, token)


@pytest.mark.parametrize("token, problem", BAD_TOKENS, ids=[p for _, p in BAD_TOKENS])
def test_a_malformed_token_in_the_secrets_file_is_refused_unquoted(
    config_file: Path, token: str, problem: str
) -> None:
    config = load(config_file, config_text())
    write_private_file(
        home_paths().secrets_file, f'[tokens]\n"1000000002" = {toml_string(token)}\n'
    )
    environ = {"DHAN_LEADER_TOKEN": TOKEN}
    message = f'the access token in secrets.toml under [tokens] "1000000002" {problem}; {RULE}'
    problems = validate(config, environ)
    assert problems == [Problem("error", F1, message)]
    with pytest.raises(ConfigError) as raised:
        resolve_tokens(config, environ)
    assert raised.value.message == f"{F1}: {message}"
    assert_no_token_in(str(problems) + raised.value.message, token)


def test_every_bad_token_is_its_own_line(config_file: Path) -> None:
    config = load(config_file, config_text())
    environ = {"DHAN_LEADER_TOKEN": TOKEN + "\t" + TOKEN, "DHAN_F1_TOKEN": "short"}
    problems = validate(config, environ)
    assert [(p.where, p.message.split(";")[0]) for p in problems] == [
        (
            "leader",
            "the access token in the environment variable DHAN_LEADER_TOKEN contains a "
            f"control character at position {len(TOKEN) + 1}",
        ),
        (F1, "the access token in the environment variable DHAN_F1_TOKEN is 5 characters long"),
    ]


def test_a_disabled_followers_bad_token_is_a_warning_and_left_out(config_file: Path) -> None:
    second = 'name = "f2"\nclient_id = "1000000003"\nfixed_lots = 1\nsource_address = "192.0.2.12"'
    text = config_text(follower="enabled = false").replace(
        "[settings]", f"[[followers]]\n{second}\n\n[settings]"
    )
    config = load(config_file, text)
    environ = {**ENV, "DHAN_F1_TOKEN": "x" * 5000, "DHAN_TOKEN_1000000003": F1_TOKEN[::-1]}
    assert [(p.level, p.where) for p in validate(config, environ)] == [("warning", F1)]
    assert set(resolve_tokens(config, environ)) == {"1000000001", "1000000003"}


@pytest.mark.parametrize("length", TOKEN_LENGTH)
def test_tokens_at_either_length_limit_are_accepted(config_file: Path, length: int) -> None:
    config = load(config_file, config_text())
    token = (TOKEN * 60)[:length]
    assert (
        resolve_tokens(config, {**ENV, "DHAN_LEADER_TOKEN": token})["1000000001"].reveal() == token
    )


def test_surrounding_whitespace_is_trimmed_not_refused(config_file: Path) -> None:
    config = load(config_file, config_text())
    environ = {**ENV, "DHAN_LEADER_TOKEN": f"  {TOKEN}\n"}
    assert validate(config, environ) == []
    assert resolve_tokens(config, environ)["1000000001"].reveal() == TOKEN


def test_a_raw_control_character_in_the_secrets_file_is_not_quoted(config_file: Path) -> None:
    # TOML itself forbids it; tomllib's error would name the character.
    config = load(config_file, config_text())
    secrets = home_paths().secrets_file
    write_private_file(secrets, f'[tokens]\n"1000000002" = "{TOKEN[:12]}\x01{TOKEN[12:]}"\n')
    problems = validate(config, {"DHAN_LEADER_TOKEN": TOKEN})
    assert problems == [
        Problem(
            "error",
            "secrets.toml",
            f"{secrets}: invalid TOML: Illegal character (at line 2, column 29)",
        )
    ]
    assert "\\x01" not in str(problems)


# --- the real CLI -------------------------------------------------------------------------


@pytest.fixture
def home_config(copytrade_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DHAN_LEADER_TOKEN", TOKEN)
    monkeypatch.setenv("DHAN_F1_TOKEN", F1_TOKEN)
    path = copytrade_home / "copytrade.toml"
    path.write_text(config_text())
    return path


def test_validate_refuses_a_control_character_in_a_secrets_token(
    home_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DHAN_F1_TOKEN")
    bad = F1_TOKEN[:16] + "\x1b" + F1_TOKEN[16:]
    write_private_file(home_paths().secrets_file, f'[tokens]\n"1000000002" = {toml_string(bad)}\n')
    assert run(["config", "validate"]) == ExitCode.CONFIG == 3
    out, err = capsys.readouterr()
    assert out == (
        f'error: {F1}: the access token in secrets.toml under [tokens] "1000000002" contains '
        f"a control character at position 17; {RULE}\n"
    )
    assert err == f"error: {home_config}: 1 error, 0 warnings\n"
    assert_no_token_in(out + err, bad)


@pytest.mark.parametrize(
    "table, setting, line",
    [
        (
            "leader",
            'order_ws_url = "ws://host:"',
            "error: leader.order_ws_url: no port number after ':' in 'ws://host:'; give a "
            "port from 1 to 65535",
        ),
        (
            "settings",
            "reconcile_interval_seconds = 1e300",
            "error: copytrade.toml: settings.reconcile_interval_seconds: must be from 0.25 to "
            "3,600, not 1e+300",
        ),
        (
            "settings",
            "http_timeout_seconds = 1e300",
            "error: copytrade.toml: settings.http_timeout_seconds: must be from 0.5 to 120, "
            "not 1e+300",
        ),
        (
            "sizing",
            "multiplier = 1e9",
            f"error: copytrade.toml: {F1}.multiplier: must be from 0.01 to 100, not 1000000000.0",
        ),
        (
            "sizing",
            "multiplier = 1e-9",
            f"error: copytrade.toml: {F1}.multiplier: must be from 0.01 to 100, not 1e-09",
        ),
    ],
    ids=["ws-no-port", "interval-1e300", "timeout-1e300", "multiplier-1e9", "multiplier-1e-9"],
)
def test_validate_refuses_each_hostile_value_from_the_review(
    home_config: Path, capsys: pytest.CaptureFixture[str], table: str, setting: str, line: str
) -> None:
    home_config.write_text(text_with(table, setting))
    assert run(["config", "validate"]) == ExitCode.CONFIG
    out, err = capsys.readouterr()
    assert line in (out + err).splitlines()
    assert_no_token_in(out + err)


@pytest.mark.usefixtures("home_config")
def test_the_cli_process_exits_3_and_never_prints_the_token() -> None:
    bad = TOKEN[:17] + "\x07" + TOKEN[17:]
    # COPYTRADE_DEBUG: tracebacks on, the most a user could be shown.
    env = {**os.environ, "DHAN_LEADER_TOKEN": bad, "COPYTRADE_DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "copytrade", "config", "validate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    output = result.stdout + result.stderr
    assert re.search(
        r"leader: the access token in the environment variable DHAN_LEADER_TOKEN "
        r"contains a control character at position 18",
        output,
    )
    assert_no_token_in(output, bad)
    # follow, which trades, refuses the same way before connecting anywhere.
    follow = subprocess.run(
        [sys.executable, "-m", "copytrade", "follow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert follow.returncode == 3
    assert_no_token_in(follow.stdout + follow.stderr, bad)


# --- issue 11: [alerts] webhook URLs carry bot tokens; config init takes none on argv ------

HOOK = f"https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=1"


@pytest.mark.parametrize("alerts", [
    f'webhook_url = "{HOOK}"',
    f'webhook_url = "ftp://api.telegram.org/bot{TOKEN}"',
    f'webhook_url = "https://api.telegram.org:0/bot{TOKEN}"',
    f'webhook_url = "https://[api.telegram.org/bot{TOKEN}"',
    f'webhook_url_env = "{HOOK}"',
    f'webhook_url_env = "{TOKEN}"',
    f'fields = {{ chat_id = "{TOKEN}" }}\nwebhook_url = "http://x"\nwebhook_url_env = "A"',
], ids=["good", "scheme", "port-0", "bracket", "url-as-env-name", "token-as-env-name", "both"])
def test_validate_and_show_never_print_a_webhook_urls_path(
    home_config: Path, capsys: pytest.CaptureFixture[str], alerts: str
) -> None:
    home_config.write_text(config_text() + f"\n[alerts]\n{alerts}\n")
    run(["config", "validate"])
    run(["config", "show"])
    run(["config", "show", "--json"])
    out, err = capsys.readouterr()
    assert_no_token_in(out + err)


def test_a_webhook_url_in_its_variable_is_never_printed(
    home_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home_config.write_text(config_text() + '\n[alerts]\nwebhook_url_env = "HOOK"\n')
    for value in (HOOK, f"bot{TOKEN}", f"https://api.telegram.org:99999/bot{TOKEN}"):
        monkeypatch.setenv("HOOK", value)
        run(["config", "validate"])
        run(["config", "show", "--json"])
        out, err = capsys.readouterr()
        assert "HOOK" in out + err
        assert_no_token_in(out + err)


@pytest.mark.parametrize(
    "sim", ["http://127.0.0.1:8181/v2?x=\x07", "http://h:99999/v2", "x" * 5000, "http://h/api"]
)
def test_config_init_refuses_a_hostile_sim_url_in_one_line(
    copytrade_home: Path, capsys: pytest.CaptureFixture[str], sim: str
) -> None:
    assert run(["config", "init", "--sim", sim]) == ExitCode.USAGE
    _out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: --sim: ")
    assert list(copytrade_home.iterdir()) == []
