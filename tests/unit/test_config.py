from __future__ import annotations

import dataclasses
import json
import os
import textwrap
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copytrade.config import (
    DEFAULT_API_URL,
    DEFAULT_INSTRUMENTS_URL,
    DEFAULT_ORDER_WS_URL,
    AccountConfig,
    Config,
    Egress,
    FollowerConfig,
    Problem,
    Secret,
    Settings,
    Sizing,
    load_config,
    redacted,
    require_valid,
    resolve_tokens,
    token_sources,
    validate,
)
from copytrade.errors import ConfigError
from copytrade.home import home_paths, write_private_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

# Distinctive, so a leak anywhere is found by a plain substring search.
LEADER_TOKEN = "tok-LEADER-5f2a9c"
F1_TOKEN = "tok-FOLLOWER1-8d1e07"
F2_TOKEN = "tok-FOLLOWER2-c3b6a4"
ALL_TOKENS_ENV = {
    "DHAN_LEADER_TOKEN": LEADER_TOKEN,
    "DHAN_F1_TOKEN": F1_TOKEN,
    "DHAN_F2_TOKEN": F2_TOKEN,
}

FULL = """
[leader]
client_id = "1000000001"
access_token_env = "DHAN_LEADER_TOKEN"
api_url = "http://127.0.0.1:8181/v2"
order_ws_url = "ws://127.0.0.1:8182"

[[followers]]
name = "family-1"
client_id = "1000000002"
access_token_env = "DHAN_F1_TOKEN"
api_url = "http://127.0.0.1:8181/v2"
order_ws_url = "ws://127.0.0.1:8182"
multiplier = 1.5
enabled = false
shadow = true
max_quantity = 500
max_order_value = 250000
allow_segments = ["NSE_EQ", "NSE_FNO"]
deny_segments = ["MCX_COMM"]
allow_products = ["CNC", "INTRADAY"]
deny_products = ["BO"]
allow_security_ids = ["1333", 11536]
deny_security_ids = ["2885"]
proxy = "http://proxy.example:3128"
mirror_on_transit = true
max_order_age_seconds = 60
max_price_drift_percent = 0.5
on_divergence = "resync"

[[followers]]
name = "family-2"
client_id = "1000000003"
access_token_env = "DHAN_F2_TOKEN"
fixed_lots = 2
source_address = "192.0.2.10"

[[followers]]
name = "family-3"
client_id = "1000000004"
capital_ratio = true

[settings]
instruments_url = "https://example.com/scrips.csv"
reconcile_interval_seconds = 1.5
http_timeout_seconds = 2
freeze_limits = { "1333" = 1800, 2885 = 900 }
"""

# Two followers, clean: validate() finds nothing once the tokens are in the env.
CLEAN_TABLES = {
    "leader": ['client_id = "1000000001"', 'access_token_env = "DHAN_LEADER_TOKEN"'],
    "follower1": [
        'name = "family-1"',
        'client_id = "1000000002"',
        'access_token_env = "DHAN_F1_TOKEN"',
        "multiplier = 1.0",
        'source_address = "192.0.2.11"',
    ],
    "follower2": [
        'name = "family-2"',
        'client_id = "1000000003"',
        'access_token_env = "DHAN_F2_TOKEN"',
        'source_address = "192.0.2.12"',
    ],
    "settings": [],
}


def clean(
    leader: str = "", follower1: str = "", follower2: str = "fixed_lots = 1", settings: str = ""
) -> str:
    """The clean config, each table's lines replaced or extended by the given lines."""
    changes = {
        "leader": leader,
        "follower1": follower1,
        "follower2": follower2,
        "settings": settings,
    }
    headers = {
        "leader": "[leader]",
        "follower1": "[[followers]]",
        "follower2": "[[followers]]",
        "settings": "[settings]",
    }
    parts = []
    for table, lines in CLEAN_TABLES.items():
        merged = {line.split("=")[0].strip(): line for line in lines}
        for line in changes[table].splitlines():
            merged[line.split("=")[0].strip()] = line
        parts.append("\n".join([headers[table], *merged.values()]))
    return "\n\n".join(parts) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "copytrade.toml"


def load_text(config_file: Path, text: str) -> Config:
    return load_config(write(config_file, text))


def write_secrets(tokens: dict[str, str]) -> Path:
    path = home_paths().secrets_file
    lines = ["[tokens]", *(f'"{client}" = "{token}"' for client, token in tokens.items())]
    write_private_file(path, "\n".join(lines) + "\n")
    return path


# --- parsing ------------------------------------------------------------------------------


def test_every_key_is_parsed(config_file: Path) -> None:
    config = load_text(config_file, FULL)
    local = {"api_url": "http://127.0.0.1:8181/v2", "order_ws_url": "ws://127.0.0.1:8182"}
    assert config.leader == AccountConfig(
        client_id="1000000001", access_token_env="DHAN_LEADER_TOKEN", egress=Egress(), **local
    )
    family_1, family_2, family_3 = config.followers
    assert family_1 == FollowerConfig(
        name="family-1",
        account=AccountConfig(
            client_id="1000000002",
            access_token_env="DHAN_F1_TOKEN",
            egress=Egress(proxy="http://proxy.example:3128"),
            **local,
        ),
        sizing=Sizing("multiplier", 1.5),
        enabled=False,
        shadow=True,
        max_quantity=500,
        max_order_value=250000.0,
        allow_segments=frozenset({"NSE_EQ", "NSE_FNO"}),
        deny_segments=frozenset({"MCX_COMM"}),
        allow_products=frozenset({"CNC", "INTRADAY"}),
        deny_products=frozenset({"BO"}),
        allow_security_ids=frozenset({"1333", "11536"}),
        deny_security_ids=frozenset({"2885"}),
        mirror_on_transit=True,
        max_order_age_seconds=60.0,
        max_price_drift_percent=0.5,
        on_divergence="resync",
    )
    assert family_2.sizing == Sizing("fixed_lots", 2.0)
    assert family_2.account.egress == Egress(source_address="192.0.2.10")
    assert family_3.sizing == Sizing("capital_ratio", 1.0)
    assert config.settings == Settings(
        instruments_url="https://example.com/scrips.csv",
        reconcile_interval_seconds=1.5,
        freeze_limits=types.MappingProxyType({"1333": 1800, "2885": 900}),
        http_timeout_seconds=2.0,
    )
    assert config.source == config_file
    assert config.enabled_followers == (family_2, family_3)


def test_defaults_are_filled_in(config_file: Path) -> None:
    config = load_text(
        config_file,
        """
        [leader]
        client_id = "1000000001"

        [[followers]]
        name = "f"
        client_id = "1000000002"
        multiplier = 2
    """,
    )
    assert config.leader == AccountConfig(
        client_id="1000000001",
        access_token_env="DHAN_TOKEN_1000000001",
        api_url=DEFAULT_API_URL,
        order_ws_url=DEFAULT_ORDER_WS_URL,
        egress=Egress(),
    )
    (follower,) = config.followers
    assert follower.sizing == Sizing("multiplier", 2.0)
    assert (follower.enabled, follower.shadow, follower.mirror_on_transit) == (True, False, False)
    assert (follower.max_quantity, follower.max_order_value) == (None, None)
    assert follower.allow_segments == follower.deny_security_ids == frozenset()
    assert follower.max_order_age_seconds == 300.0
    assert follower.max_price_drift_percent == 1.0
    assert follower.on_divergence == "alert"
    assert config.settings == Settings(
        instruments_url=DEFAULT_INSTRUMENTS_URL,
        reconcile_interval_seconds=3.0,
        freeze_limits=types.MappingProxyType({}),
        http_timeout_seconds=5.0,
    )


def test_a_file_without_followers_loads(config_file: Path) -> None:
    # Structurally fine; validate() is what says there is nothing to mirror.
    config = load_text(config_file, '[leader]\nclient_id = "1000000001"\n')
    assert config.followers == ()


def test_the_home_config_file_is_the_default(copytrade_home: Path) -> None:
    write(copytrade_home / "copytrade.toml", clean())
    assert load_config().source == home_paths().config_file


def test_fixed_lots_may_be_written_as_a_whole_float(config_file: Path) -> None:
    config = load_text(config_file, clean(follower2="fixed_lots = 3.0"))
    assert config.followers[1].sizing == Sizing("fixed_lots", 3.0)


# --- one line per mistake, naming the key -------------------------------------------------

F2 = "followers[1] (family-2)"
STRUCTURE_ERRORS = [
    # (config text, the exact error after "copytrade.toml: ")
    (clean(follower2="multipler = 2"), f"{F2}.multipler: unknown key (did you mean 'multiplier'?)"),
    (
        clean(follower2="fixed_lots = 1.5"),
        f"{F2}.fixed_lots: must be a whole number of lots from 1 to 100,000, not 1.5",
    ),
    (
        clean(follower2="fixed_lots = 0"),
        f"{F2}.fixed_lots: must be a whole number of lots from 1 to 100,000, not 0",
    ),
    (
        clean(follower2="fixed_lots = true"),
        f"{F2}.fixed_lots: must be a whole number of lots from 1 to 100,000, not true",
    ),
    (clean(follower2="multiplier = 0"), f"{F2}.multiplier: must be from 0.01 to 100, not 0"),
    (
        clean(follower2="multiplier = -1.5"),
        f"{F2}.multiplier: must be from 0.01 to 100, not -1.5",
    ),
    (clean(follower2='multiplier = "2"'), f"{F2}.multiplier: must be a number"),
    (clean(follower2="multiplier = inf"), f"{F2}.multiplier: must be a finite number"),
    (clean(follower2="multiplier = nan"), f"{F2}.multiplier: must be a finite number"),
    (clean(follower2="capital_ratio = 1"), f"{F2}.capital_ratio: must be true or false"),
    (
        clean(follower2="multiplier = 1.0\nfixed_lots = 2"),
        f"{F2}.fixed_lots: conflicts with multiplier; set exactly one of multiplier, fixed_lots "
        "or capital_ratio = true",
    ),
    (
        clean(follower2="fixed_lots = 1\ncapital_ratio = true"),
        f"{F2}.capital_ratio: conflicts with fixed_lots; set exactly one of multiplier, "
        "fixed_lots or capital_ratio = true",
    ),
    (
        clean(follower2=""),
        f"{F2}: no sizing: set one of multiplier, fixed_lots or capital_ratio = true",
    ),
    (
        clean(follower2="capital_ratio = false"),
        f"{F2}: no sizing: set one of multiplier, fixed_lots or capital_ratio = true",
    ),
    (clean(follower2='fixed_lots = 1\nenabled = "yes"'), f"{F2}.enabled: must be true or false"),
    (clean(follower2="fixed_lots = 1\nshadow = 1"), f"{F2}.shadow: must be true or false"),
    (
        clean(follower2="fixed_lots = 1\nmax_quantity = 0"),
        f"{F2}.max_quantity: must be a whole number from 1 to 10,000,000, not 0",
    ),
    (
        clean(follower2="fixed_lots = 1\nmax_quantity = 2.5"),
        f"{F2}.max_quantity: must be a whole number from 1 to 10,000,000, not 2.5",
    ),
    (
        clean(follower2="fixed_lots = 1\nmax_order_value = 0"),
        f"{F2}.max_order_value: must be from 1 to 1,000,000,000, not 0",
    ),
    (
        clean(follower2='fixed_lots = 1\nallow_segments = "NSE_EQ"'),
        f'{F2}.allow_segments: must be a list of strings, e.g. ["A", "B"]',
    ),
    (
        clean(follower2="fixed_lots = 1\ndeny_products = [1]"),
        f"{F2}.deny_products: must be a list of strings",
    ),
    (
        clean(follower2="fixed_lots = 1\nallow_security_ids = [1.5]"),
        f"{F2}.allow_security_ids: must be a list of strings or whole numbers",
    ),
    (
        clean(follower2="fixed_lots = 1\nmax_order_age_seconds = 0"),
        f"{F2}.max_order_age_seconds: must be from 1 to 86,400, not 0",
    ),
    (
        clean(follower2="fixed_lots = 1\nmax_price_drift_percent = -1"),
        f"{F2}.max_price_drift_percent: must be from 0 to 100, not -1",
    ),
    (
        clean(follower2='fixed_lots = 1\non_divergence = "ignore"'),
        f"{F2}.on_divergence: must be 'alert' or 'resync', not 'ignore'",
    ),
    (
        clean(follower2='fixed_lots = 1\nmirror_on_transit = "no"'),
        f"{F2}.mirror_on_transit: must be true or false",
    ),
    (clean(follower2='fixed_lots = 1\nproxy = " "'), f"{F2}.proxy: must not be empty"),
    (clean(leader="source_address = 10"), "leader.source_address: must be a string"),
    (clean(leader="client_id_ = 1"), "leader.client_id_: unknown key (did you mean 'client_id'?)"),
    (clean(leader="API_URL = 'x'"), "leader.API_URL: unknown key (did you mean 'api_url'?)"),
    (clean(leader="colour = 'red'"), "leader.colour: unknown key"),
    (
        clean(settings="reconcile_interval_seconds = 0"),
        "settings.reconcile_interval_seconds: must be from 0.25 to 3,600, not 0",
    ),
    (
        clean(settings="http_timeout_seconds = false"),
        "settings.http_timeout_seconds: must be a number",
    ),
    (clean(settings="instruments_url = 5"), "settings.instruments_url: must be a string"),
    (
        clean(settings="freeze_limits = 5"),
        "settings.freeze_limits: must be a table of security_id = units",
    ),
    (
        clean(settings="freeze_limits = { 1333 = 0 }"),
        "settings.freeze_limits.1333: must be a whole number of units from 1 to 10,000,000, not 0",
    ),
    (
        clean(settings="freeze_limit = {}"),
        "settings.freeze_limit: unknown key (did you mean 'freeze_limits'?)",
    ),
    (clean() + "\n[follower]\nname = 'x'\n", "follower: unknown key (did you mean 'followers'?)"),
    (
        '[leader]\nclient_id = "1"\n[followers]\nname = "x"\n',
        "followers: must be an array of tables: write [[followers]], not [followers]",
    ),
    (
        '[[followers]]\nname = "x"\nclient_id = "2"\nmultiplier = 1.0\n',
        "leader: missing; add a [leader] table with client_id",
    ),
    ('leader = "1000000001"\n', "leader: must be a table"),
    ("[leader]\n", "leader.client_id: missing (required)"),
    (
        "[leader]\nclient_id = 1000000001\n",
        'leader.client_id: must be a string (quote it: "1000000001")',
    ),
    (
        '[leader]\nclient_id = "10 01"\n',
        "leader.client_id: must be the Dhan client id: up to 32 letters, digits, '_' or '-'",
    ),
    (
        '[leader]\nclient_id = "1"\n[[followers]]\nclient_id = "2"\nmultiplier = 1.0\n',
        "followers[0].name: missing (required)",
    ),
    (
        '[leader]\nclient_id = "1"\n[[followers]]\nname = "my family"\nclient_id = "2"\n',
        "followers[0].name: must be 1-32 letters, digits, '_', '.' or '-', starting with a "
        "letter or digit",
    ),
]


@pytest.mark.parametrize(
    "text, expected",
    STRUCTURE_ERRORS,
    ids=[expected.split(": ")[0] for _, expected in STRUCTURE_ERRORS],
)
def test_each_mistake_is_one_line_naming_the_key(
    config_file: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(config_file, text)
    assert raised.value.message == f"copytrade.toml: {expected}"
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("key", ["access_token", "token"])
def test_a_token_in_the_config_file_is_refused_without_echoing_it(
    config_file: Path, key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(config_file, clean(follower2=f'fixed_lots = 1\n{key} = "{F2_TOKEN}"'))
    assert raised.value.message.startswith(f"copytrade.toml: {F2}.{key}: tokens do not belong")
    assert F2_TOKEN not in raised.value.message


def test_a_token_pasted_as_the_env_var_name_is_not_echoed(config_file: Path) -> None:
    pasted = "eyJhbGciOiJIUzUxMiJ9.eyJpc3Mi.abc-def"
    with pytest.raises(ConfigError) as raised:
        load_text(config_file, f'[leader]\nclient_id = "1"\naccess_token_env = "{pasted}"\n')
    assert raised.value.message == (
        "copytrade.toml: leader.access_token_env: must be the NAME of an environment variable "
        "(letters, digits, '_'), not the token itself"
    )


def test_toml_syntax_errors_give_the_file_and_line(config_file: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(config_file, '[leader]\nclient_id = "1000000001"\nmultiplier = 1.0.0\n')
    # The wording is tomllib's (it varies across Python versions); the place is ours.
    message = raised.value.message
    assert message.startswith(f"{config_file}: invalid TOML: ")
    assert "(at line 3, column " in message


def test_a_missing_file_says_where_it_looked_and_what_to_do(copytrade_home: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config()
    message = raised.value.message
    assert message.startswith(f"no file at {copytrade_home / 'copytrade.toml'}; write one")
    # Commands every install has, not docs/ files the wheel does not ship.
    assert "copytrade config init --sim" in message
    assert "copytrade config init --help" in message
    assert "docs/" not in message
    assert "--config PATH" in message


def test_a_directory_or_binary_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[leader]")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(binary)


# --- tokens -------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(F1_TOKEN)
    shown = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>20}",
        "%s" % secret,  # noqa: UP031 - the old way must hide it too
        str([secret]),
        str({"token": secret}),
    ]
    assert not any(F1_TOKEN in text for text in shown)
    assert str(secret) == "***"
    assert secret.reveal() == F1_TOKEN
    assert secret == Secret(F1_TOKEN) != Secret(F2_TOKEN)
    assert secret != F1_TOKEN  # a Secret is not a str: no accidental comparisons


def test_secret_stays_hidden_in_a_traceback() -> None:
    import traceback

    secret = Secret(F1_TOKEN)
    try:
        raise RuntimeError(f"login failed with {secret}")
    except RuntimeError:
        text = traceback.format_exc()
    assert F1_TOKEN not in text


def test_tokens_come_from_the_environment(config_file: Path) -> None:
    config = load_text(config_file, clean())
    tokens = resolve_tokens(config, ALL_TOKENS_ENV)
    assert {client: token.reveal() for client, token in tokens.items()} == {
        "1000000001": LEADER_TOKEN,
        "1000000002": F1_TOKEN,
        "1000000003": F2_TOKEN,
    }
    assert all(isinstance(token, Secret) for token in tokens.values())


def test_tokens_come_from_the_secrets_file(config_file: Path) -> None:
    config = load_text(config_file, clean())
    write_secrets({"1000000001": LEADER_TOKEN, "1000000002": F1_TOKEN, "1000000003": F2_TOKEN})
    tokens = resolve_tokens(config, {})
    assert tokens["1000000002"].reveal() == F1_TOKEN
    assert token_sources(config, {}) == dict.fromkeys(tokens, "secrets file")


def test_the_environment_wins_over_the_secrets_file(config_file: Path) -> None:
    config = load_text(config_file, clean())
    write_secrets({"1000000001": "from-file", "1000000002": F1_TOKEN, "1000000003": F2_TOKEN})
    environ = {"DHAN_LEADER_TOKEN": LEADER_TOKEN, "DHAN_F1_TOKEN": "  "}  # blank: unset
    tokens = resolve_tokens(config, environ)
    assert tokens["1000000001"].reveal() == LEADER_TOKEN
    assert tokens["1000000002"].reveal() == F1_TOKEN
    assert token_sources(config, environ) == {
        "1000000001": "env",
        "1000000002": "secrets file",
        "1000000003": "secrets file",
    }


def test_tokens_are_read_from_the_real_environment_by_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, token in ALL_TOKENS_ENV.items():
        monkeypatch.setenv(name, token)
    tokens = resolve_tokens(load_text(config_file, clean()))
    assert tokens["1000000003"].reveal() == F2_TOKEN


def test_a_missing_token_names_the_env_var_and_the_secrets_file(config_file: Path) -> None:
    config = load_text(config_file, clean())
    environ = {"DHAN_LEADER_TOKEN": LEADER_TOKEN, "DHAN_F1_TOKEN": F1_TOKEN}
    with pytest.raises(ConfigError) as raised:
        resolve_tokens(config, environ)
    assert raised.value.message == (
        f"{F2}: no access token for client 1000000003: set the environment variable "
        f'DHAN_F2_TOKEN, or add "1000000003" = "<token>" under [tokens] in '
        f"{home_paths().secrets_file}"
    )
    assert LEADER_TOKEN not in raised.value.message


def test_a_disabled_follower_needs_no_token(config_file: Path) -> None:
    config = load_text(config_file, clean(follower2="fixed_lots = 1\nenabled = false"))
    environ = {"DHAN_LEADER_TOKEN": LEADER_TOKEN, "DHAN_F1_TOKEN": F1_TOKEN}
    assert set(resolve_tokens(config, environ)) == {"1000000001", "1000000002"}


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secrets_file_others_can_read_is_refused(config_file: Path, mode: int) -> None:
    config = load_text(config_file, clean())
    secrets = write_secrets({"1000000001": LEADER_TOKEN})
    secrets.chmod(mode)
    with pytest.raises(ConfigError) as raised:
        resolve_tokens(config, ALL_TOKENS_ENV)  # refused even when the env has every token
    assert raised.value.message == (
        f"{secrets} is accessible to other users (mode {mode:04o}); "
        f"it holds secrets, so run: chmod 600 {secrets}"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (f'[tokens]\n"1000000001" = "{LEADER_TOKEN}\n', "invalid TOML: "),
        (f'token = "{LEADER_TOKEN}"\n', "token: tokens do not belong in copytrade.toml"),
        ('[token]\n"1000000001" = "x"\n', "token: tokens do not belong"),
        ('[tokens]\n"1000000001" = 123\n', "tokens.1000000001: must be a non-empty string"),
        ('tokens = "x"\n', "tokens: must be a table"),
    ],
)
def test_a_malformed_secrets_file_is_one_line_without_the_token(
    config_file: Path, text: str, expected: str
) -> None:
    config = load_text(config_file, clean())
    write_private_file(home_paths().secrets_file, text)
    with pytest.raises(ConfigError) as raised:
        resolve_tokens(config, {})
    assert expected in raised.value.message
    assert LEADER_TOKEN not in raised.value.message
    assert "\n" not in raised.value.message


# --- validate -----------------------------------------------------------------------------


def problems_for(
    config_file: Path, text: str, environ: dict[str, str] | None = None
) -> list[Problem]:
    config = load_text(config_file, text)
    return validate(config, ALL_TOKENS_ENV if environ is None else environ)


def test_a_clean_config_has_no_problems(config_file: Path) -> None:
    assert problems_for(config_file, clean()) == []


def test_the_full_example_has_no_errors(config_file: Path) -> None:
    write_secrets({"1000000004": "tok-FOLLOWER3-a41b90"})
    problems = problems_for(config_file, FULL)
    assert [p for p in problems if p.level == "error"] == []


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            clean(follower2='fixed_lots = 1\nclient_id = "1000000001"'),
            [
                Problem(
                    "error",
                    f"{F2}.client_id",
                    "client 1000000001 is already the leader; each account can appear only once",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\nclient_id = "1000000002"'),
            [
                Problem(
                    "error",
                    f"{F2}.client_id",
                    "client 1000000002 is already follower 'family-1'; each account can appear "
                    "only once",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\nname = "Family-1"'),
            [
                Problem(
                    "error",
                    "followers[1] (Family-1).name",
                    "duplicate name; followers[0] is also called 'Family-1'",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\naccess_token_env = "DHAN_F1_TOKEN"'),
            [
                Problem(
                    "error",
                    f"{F2}.access_token_env",
                    "DHAN_F1_TOKEN is also the token variable of client 1000000002; each "
                    "account has its own token",
                )
            ],
        ),
        (
            clean(leader='api_url = "ftp://api.dhan.co"'),
            [
                Problem(
                    "error",
                    "leader.api_url",
                    "must be a https:// (or http://) URL with a host, not 'ftp://api.dhan.co'",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\norder_ws_url = "https://api-order-update.dhan.co"'),
            [
                Problem(
                    "error",
                    f"{F2}.order_ws_url",
                    "must be a wss:// (or ws://) URL with a host, not "
                    "'https://api-order-update.dhan.co'",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\norder_ws_url = "wss://host:notaport"'),
            [Problem("error", f"{F2}.order_ws_url", "not a valid URL: 'wss://host:notaport'")],
        ),
        (
            clean(settings='instruments_url = "images.dhan.co/x.csv"'),
            [
                Problem(
                    "error",
                    "settings.instruments_url",
                    "must be a https:// (or http://) URL with a host, not 'images.dhan.co/x.csv'",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\nproxy = "http://p.example:3128"'),
            [Problem("error", f"{F2}.proxy", "set proxy or source_address, not both")],
        ),
        (
            clean(follower2='fixed_lots = 1\nsource_address = "192.0.2.300"'),
            [
                Problem(
                    "error", f"{F2}.source_address", "'192.0.2.300' is not an IPv4 or IPv6 address"
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\nsource_address = "192.0.2.11"'),
            [
                Problem(
                    "error",
                    F2,
                    "same proxy/source_address as followers[0] (family-1); Dhan "
                    "accepts each IP for one account only",
                )
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\nallow_segments = ["NSE_EQ", "nse_fno", "NSE_FO"]'),
            [
                Problem(
                    "error",
                    f"{F2}.allow_segments",
                    "unknown name 'NSE_FO' (did you mean 'NSE_FNO'?)",
                ),
                Problem(
                    "error",
                    f"{F2}.allow_segments",
                    "unknown name 'nse_fno' (did you mean 'NSE_FNO'?)",
                ),
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\ndeny_products = ["INTRADAY", "DELIVERY"]'),
            [Problem("error", f"{F2}.deny_products", "unknown name 'DELIVERY'")],
        ),
        (
            clean(
                follower2='fixed_lots = 1\nallow_products = ["CNC", "MTF"]\n'
                'deny_products = ["MTF"]\nallow_segments = ["NSE_EQ"]\n'
                'deny_segments = ["NSE_EQ"]\nallow_security_ids = [1333]\n'
                'deny_security_ids = ["1333"]'
            ),
            [
                Problem(
                    "error",
                    f"{F2}.deny_segments",
                    "NSE_EQ is in both allow_segments and deny_segments",
                ),
                Problem(
                    "error",
                    f"{F2}.deny_products",
                    "MTF is in both allow_products and deny_products",
                ),
                Problem(
                    "error",
                    f"{F2}.deny_security_ids",
                    "1333 is in both allow_security_ids and deny_security_ids",
                ),
            ],
        ),
        (
            clean(follower2='fixed_lots = 1\ndeny_security_ids = ["RELIANCE"]'),
            [
                Problem(
                    "warning",
                    f"{F2}.deny_security_ids",
                    "'RELIANCE' does not look like a Dhan security id (digits, from the "
                    "instrument list)",
                )
            ],
        ),
        (
            clean(settings='freeze_limits = { "NIFTY" = 1800 }'),
            [
                Problem(
                    "warning",
                    "settings.freeze_limits.NIFTY",
                    "does not look like a Dhan security id (digits)",
                )
            ],
        ),
        (
            clean(follower1="enabled = false", follower2="fixed_lots = 1\nenabled = false"),
            [Problem("error", "followers", "no enabled followers: nothing would be mirrored")],
        ),
        (
            clean(follower1="shadow = true", follower2="fixed_lots = 1\nshadow = true"),
            [
                Problem(
                    "warning",
                    "followers",
                    "every enabled follower is in shadow mode: orders "
                    "are computed and recorded but none is sent",
                )
            ],
        ),
    ],
)
def test_validate_finds(config_file: Path, text: str, expected: list[Problem]) -> None:
    assert problems_for(config_file, text) == expected


def test_validate_finds_every_problem_at_once_in_file_order(config_file: Path) -> None:
    text = clean(
        leader='api_url = "nope"',
        follower1='name = "family-2"\nallow_products = ["CNC", "cnc"]',
        follower2='fixed_lots = 1\nproxy = "ftp://p"',
        settings='instruments_url = "x"',
    )
    problems = problems_for(config_file, text, environ={"DHAN_F1_TOKEN": F1_TOKEN})
    assert [(p.level, p.where) for p in problems] == [
        ("error", "leader"),  # its token
        ("error", "leader.api_url"),
        ("error", "followers[0] (family-2).allow_products"),
        ("error", F2),  # its token
        ("error", f"{F2}.name"),
        ("error", f"{F2}.proxy"),  # both proxy and source_address
        ("error", f"{F2}.proxy"),  # not http(s)
        ("error", "settings.instruments_url"),
    ]
    assert str(problems[0]).startswith("error: leader: no access token for client 1000000001")


def test_missing_tokens_are_errors_except_for_disabled_followers(config_file: Path) -> None:
    text = clean(follower2="fixed_lots = 1\nenabled = false")
    problems = problems_for(config_file, text, environ={"DHAN_LEADER_TOKEN": LEADER_TOKEN})
    assert [(p.level, p.where) for p in problems] == [
        ("error", "followers[0] (family-1)"),
        ("warning", F2),
    ]
    assert "DHAN_F1_TOKEN" in problems[0].message


@posix_only
def test_validate_reports_an_unsafe_secrets_file_once(config_file: Path) -> None:
    secrets = write_secrets({"1000000001": LEADER_TOKEN})
    secrets.chmod(0o644)
    problems = problems_for(config_file, clean(), environ={})
    assert problems == [
        Problem(
            "error",
            "secrets.toml",
            f"{secrets} is accessible to other users (mode "
            f"0644); it holds secrets, so run: chmod 600 {secrets}",
        )
    ]


def test_plain_http_is_a_warning_except_on_this_machine(config_file: Path) -> None:
    local = 'api_url = "http://127.0.0.1:8181/v2"\norder_ws_url = "ws://localhost:8182"'
    text = clean(leader=local, follower1=local, follower2="fixed_lots = 1\n" + local)
    assert problems_for(config_file, text) == []
    remote = clean(leader='order_ws_url = "ws://api-order-update.dhan.co"')
    assert problems_for(config_file, remote) == [
        Problem(
            "warning",
            "leader.order_ws_url",
            "ws:// to api-order-update.dhan.co is "
            "unencrypted: the access token travels in clear; use wss://",
        )
    ]


def test_a_follower_on_another_server_than_the_leader_is_a_warning(config_file: Path) -> None:
    text = clean(follower2='fixed_lots = 1\napi_url = "https://sandbox.dhan.co/v2"')
    assert problems_for(config_file, text) == [
        Problem(
            "warning",
            f"{F2}.api_url",
            "talks to sandbox.dhan.co but the leader talks to "
            "api.dhan.co: mixing paper and live accounts?",
        )
    ]


def test_followers_sharing_the_default_address_is_a_warning(config_file: Path) -> None:
    text = (
        clean()
        .replace('source_address = "192.0.2.11"\n', "")
        .replace('source_address = "192.0.2.12"\n', "")
    )
    assert problems_for(config_file, text) == [
        Problem(
            "warning",
            "followers",
            "2 followers send from this host's default address; "
            "Dhan accepts each whitelisted IP for one account only, so give each a proxy "
            "or source_address",
        )
    ]


def test_a_proxy_password_never_appears_in_a_problem(config_file: Path) -> None:
    text = clean(follower2='fixed_lots = 1\nproxy = "socks5://user:hunter2@p.example:1080"')
    problems = problems_for(config_file, text)
    assert "hunter2" not in " ".join(str(p) for p in problems)
    assert (
        Problem(
            "error",
            f"{F2}.proxy",
            "must be a https:// (or http://) URL with a host, "
            "not 'socks5://user:***@p.example:1080'",
        )
        in problems
    )


def test_require_valid_raises_the_first_error_or_returns_the_tokens(config_file: Path) -> None:
    config = load_text(config_file, clean())
    assert require_valid(config, ALL_TOKENS_ENV)["1000000002"].reveal() == F1_TOKEN
    with pytest.raises(ConfigError) as raised:
        require_valid(config, {"DHAN_F1_TOKEN": F1_TOKEN})
    assert raised.value.message.startswith("leader: no access token for client 1000000001")
    assert raised.value.message.endswith("(and 1 more; run: copytrade config validate)")


# --- redacted -----------------------------------------------------------------------------


def test_redacted_shows_where_each_token_comes_from_never_the_token(config_file: Path) -> None:
    config = load_text(
        config_file, clean(follower2='fixed_lots = 1\nproxy = "http://u:hunter2@p.example:3128"')
    )
    write_secrets({"1000000002": F1_TOKEN})
    environ = {"DHAN_LEADER_TOKEN": LEADER_TOKEN}
    data = redacted(config, token_sources(config, environ))
    text = json.dumps(data)
    for secret in (LEADER_TOKEN, F1_TOKEN, "hunter2"):
        assert secret not in text
    assert data["leader"]["token"] == "set (env DHAN_LEADER_TOKEN)"
    assert data["followers"][0]["token"] == "set (secrets file)"
    assert data["followers"][1]["token"] == "MISSING"
    assert data["followers"][1]["proxy"] == "http://u:***@p.example:3128"


def test_redacted_fills_in_defaults_as_plain_data(config_file: Path) -> None:
    data = redacted(load_text(config_file, clean()), {"1000000001": True})
    assert data["source"] == str(config_file)
    assert data["leader"] == {
        "client_id": "1000000001",
        "access_token_env": "DHAN_LEADER_TOKEN",
        "token": "set",
        "api_url": DEFAULT_API_URL,
        "order_ws_url": DEFAULT_ORDER_WS_URL,
        "proxy": None,
        "source_address": None,
    }
    family_2 = data["followers"][1]
    assert family_2["token"] == "MISSING"
    assert family_2["fixed_lots"] == 1
    assert "multiplier" not in family_2
    assert family_2["max_order_age_seconds"] == 300.0
    assert family_2["on_divergence"] == "alert"
    assert data["settings"] == {
        "instruments_url": DEFAULT_INSTRUMENTS_URL,
        "reconcile_interval_seconds": 3.0,
        "http_timeout_seconds": 5.0,
        "order_rate_scale": 1.0,
        "max_orders_per_second": 10,
        "renew_tokens": True,
        "renew_before_minutes": 60.0,
        "market_hours": True,
        "freeze_limits": {},
    }
    assert json.loads(json.dumps(data)) == data  # plain data all the way down


# --- properties ---------------------------------------------------------------------------

# The documented range of a multiplier: 0.01 to 100 (tests/hostile covers outside it).
multipliers = st.floats(min_value=0.01, max_value=100)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(multiplier=multipliers)
def test_any_multiplier_in_range_round_trips(config_file: Path, multiplier: float) -> None:
    config = load_text(config_file, clean(follower2=f"multiplier = {multiplier!r}"))
    assert config.followers[1].sizing == Sizing("multiplier", multiplier)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(
    lots=st.one_of(
        st.integers(min_value=1, max_value=100_000),
        st.floats(min_value=1, max_value=1e5).filter(lambda x: not x.is_integer()),
    )
)
def test_fixed_lots_accepts_whole_numbers_only(config_file: Path, lots: float) -> None:
    text = clean(follower2=f"fixed_lots = {lots!r}")
    if isinstance(lots, int):
        assert load_text(config_file, text).followers[1].sizing == Sizing("fixed_lots", lots)
    else:
        with pytest.raises(ConfigError, match=r"followers\[1\] \(family-2\)\.fixed_lots: must"):
            load_text(config_file, text)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50)
@given(key=st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True))
def test_any_unknown_follower_key_is_named_in_one_line(config_file: Path, key: str) -> None:
    known = {field.name for field in dataclasses.fields(FollowerConfig)} | {
        "client_id",
        "access_token_env",
        "api_url",
        "order_ws_url",
        "proxy",
        "source_address",
        "multiplier",
        "fixed_lots",
        "capital_ratio",
    }
    if key in known:
        return
    with pytest.raises(ConfigError) as raised:
        load_text(config_file, clean(follower2=f"fixed_lots = 1\n{key} = 1"))
    assert raised.value.message.startswith(f"copytrade.toml: {F2}.{key}: ")
    assert "\n" not in raised.value.message


# --- the documentation's examples ---------------------------------------------------------

CONFIG_DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def doc_toml_examples() -> list[str]:
    blocks = CONFIG_DOC.read_text().split("```toml\n")[1:]
    return [block.split("```", 1)[0] for block in blocks if "[leader]" in block]


@pytest.mark.parametrize("example", doc_toml_examples(), ids=["full", "paper"])
def test_the_documented_examples_are_valid(config_file: Path, example: str) -> None:
    config = load_text(config_file, example)
    environ = {f.account.access_token_env: "tok-DOC-EXAMPLE-2b7e" for f in config.followers}
    environ[config.leader.access_token_env] = "tok-DOC-EXAMPLE-2b7e"
    assert validate(config, environ) == []
