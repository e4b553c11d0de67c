"""`broker`, `[sim]` and `[alerts]` in copytrade.toml: read, checked, shown; and the text
`copytrade config init` writes (copytrade/config/init.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from copytrade.cli.render import render_toml
from copytrade.config import load_config, redacted, validate
from copytrade.config.init import (
    SIM_FOLLOWERS,
    FollowerSpec,
    check_accounts,
    config_text,
    parse_follower,
    sim_token,
    sim_urls,
)
from copytrade.config.model import (
    DEFAULT_API_URL,
    DEFAULT_INSTRUMENTS_URL,
    DEFAULT_SIM_API_URL,
    DEFAULT_SIM_INSTRUMENTS_URL,
    DEFAULT_SIM_ORDER_WS_URL,
    Config,
    Problem,
    SimConfig,
)
from copytrade.config.show import masked_url
from copytrade.errors import ConfigError, UsageError

BOT_SECRET = "bot7712:AAF-s3cr3t-Q9x"
TELEGRAM = f"https://api.telegram.org/{BOT_SECRET}/sendMessage"
ENV = {"DHAN_TOKEN_1000000001": "tok-LEADER-5f2a9c1e", "DHAN_TOKEN_1000000002": "tok-F1-8c3d7b2a11",
       "DHAN_TOKEN_1000000003": "tok-F2-1e9f4a6c22"}


def text(top: str = "", leader: str = "", follower: str = "", tail: str = "") -> str:
    """Leader and two followers (no egress), `top` before the first table, `tail` after."""
    return (
        f'{top}\n[leader]\nclient_id = "1000000001"\n{leader}\n'
        f'[[followers]]\nname = "f1"\nclient_id = "1000000002"\nmultiplier = 1.0\n{follower}\n'
        '[[followers]]\nname = "f2"\nclient_id = "1000000003"\nmultiplier = 2.0\n'
        f"{tail}\n"
    )


def load(tmp_path: Path, body: str) -> Config:
    path = tmp_path / "copytrade.toml"
    path.write_text(body)
    return load_config(path)


def load_error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, body)
    assert "\n" not in raised.value.message
    return raised.value.message.removeprefix("copytrade.toml: ")


def wheres(config: Config, environ: dict[str, str] | None = None) -> list[str]:
    return [f"{p.level} {p.where}" for p in validate(config, ENV if environ is None else environ)]


def alert_problems(config: Config, environ: dict[str, str]) -> list[Problem]:
    return [p for p in validate(config, environ) if p.where.startswith("alerts")]


# --- broker and [sim] ---------------------------------------------------------------------


def test_broker_defaults_to_dhan_with_dhan_urls_and_the_trading_calendar(tmp_path: Path) -> None:
    config = load(tmp_path, text())
    assert (config.broker, config.sim) == ("dhan", None)
    assert config.leader.api_url == DEFAULT_API_URL
    assert config.settings.instruments_url == DEFAULT_INSTRUMENTS_URL
    assert config.settings.market_hours is True


def test_broker_sim_points_every_account_at_the_emulators_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, text('broker = "sim"'))
    assert config.sim == SimConfig()
    for account in (config.leader, *(f.account for f in config.followers)):
        assert (account.api_url, account.order_ws_url) == (
            DEFAULT_SIM_API_URL, DEFAULT_SIM_ORDER_WS_URL)
    assert config.settings.instruments_url == DEFAULT_SIM_INSTRUMENTS_URL
    assert config.settings.market_hours is False
    # the emulator takes orders from any address: no shared-egress warning, nothing at all
    assert validate(config, ENV) == []


def test_sim_table_is_the_default_and_an_account_still_overrides_it(tmp_path: Path) -> None:
    sim = ('broker = "sim"\n[sim]\napi_url = "http://10.0.0.7:9001/v2"\n'
           'order_ws_url = "ws://10.0.0.7:9002"\n'
           'instruments_url = "http://10.0.0.7:9001/api-data/api-scrip-master.csv"\n')
    config = load(tmp_path, text(sim, follower='api_url = "http://127.0.0.1:8181/v2"',
                                 tail="[settings]\nmarket_hours = true"))
    assert config.leader.api_url == "http://10.0.0.7:9001/v2"
    assert config.leader.order_ws_url == "ws://10.0.0.7:9002"
    assert config.followers[0].account.api_url == "http://127.0.0.1:8181/v2"
    assert config.followers[1].account.api_url == "http://10.0.0.7:9001/v2"
    assert config.settings.instruments_url.startswith("http://10.0.0.7:9001/")
    assert config.settings.market_hours is True  # an explicit value is honoured
    # no plain-http warning for the emulator's stand-in tokens; the odd follower is noticed
    assert wheres(config) == ["warning followers[0] (f1).api_url"]


def test_sim_table_with_broker_dhan_names_the_fix(tmp_path: Path) -> None:
    message = load_error(tmp_path, text('[sim]\napi_url = "http://127.0.0.1:8181/v2"'))
    assert message.startswith("sim: [sim] is read only with broker = \"sim\": add broker = ")


@pytest.mark.parametrize(("body", "expected"), [
    (text('broker = "paper"'), "broker: must be 'dhan' or 'sim', not 'paper'"),
    (text("broker = 1"), "broker: must be 'dhan' or 'sim', not a non-string"),
    (text('brokr = "sim"'), "brokr: unknown key (did you mean 'broker'?)"),
    (text(leader='broker = "sim"'), "leader.broker: unknown key here: write broker = "),
    (text('broker = "sim"\n[sim]\napi_ur = "x"'), "sim.api_ur: unknown key (did you mean"),
    (text("[alert]"), "alert: unknown key (did you mean 'alerts'?)"),
    (text(tail="[alerts]\nwebhook = 1"), "alerts.webhook: unknown key (did you mean"),
])
def test_mistakes_name_the_key(tmp_path: Path, body: str, expected: str) -> None:
    assert load_error(tmp_path, body).startswith(expected)


def test_a_bad_sim_url_is_reported_once_not_for_every_account(tmp_path: Path) -> None:
    config = load(tmp_path, text('broker = "sim"\n[sim]\norder_ws_url = "http://127.0.0.1:8182"'))
    assert wheres(config) == ["error sim.order_ws_url"]


def test_with_dhan_loopback_followers_the_egress_warning_suggests_broker_sim(
        tmp_path: Path) -> None:
    urls = 'api_url = "http://127.0.0.1:8181/v2"\norder_ws_url = "ws://127.0.0.1:8182"'
    body = text(leader=urls, follower=urls).replace(
        "multiplier = 2.0\n", f"multiplier = 2.0\n{urls}\n")
    [problem] = validate(load(tmp_path, body), ENV)
    assert problem.where == "followers"
    assert problem.message.endswith('set broker = "sim" at the top of the file')


def test_with_dhan_followers_on_dhan_the_egress_warning_has_no_emulator_hint(
        tmp_path: Path) -> None:
    [problem] = validate(load(tmp_path, text()), ENV)
    assert (problem.where, "broker" in problem.message) == ("followers", False)


# --- [alerts] -----------------------------------------------------------------------------


def test_alerts_default_to_off(tmp_path: Path) -> None:
    alerts = load(tmp_path, text()).alerts
    assert not alerts.enabled
    assert (alerts.timeout_seconds, alerts.retries, dict(alerts.fields)) == (5.0, 3, {})


def test_alerts_are_read(tmp_path: Path) -> None:
    body = text(tail=f'[alerts]\nwebhook_url = "{TELEGRAM}"\ntimeout_seconds = 2\nretries = 0\n'
                     'fields = { chat_id = "-1001234567890" }')
    alerts = load(tmp_path, body).alerts
    assert alerts.enabled
    assert (alerts.webhook_url, alerts.timeout_seconds, alerts.retries) == (TELEGRAM, 2.0, 0)
    assert dict(alerts.fields) == {"chat_id": "-1001234567890"}


@pytest.mark.parametrize(("alerts", "expected"), [
    (f'webhook_url = "{TELEGRAM}"\nwebhook_url_env = "HOOK"',
     "alerts.webhook_url_env: set webhook_url or webhook_url_env, not both"),
    ('webhook_url = "ftp://example.com/hook"', "alerts.webhook_url: must be an https://"),
    (f'webhook_url = "api.telegram.org/{BOT_SECRET}"', "alerts.webhook_url: must be an https://"),
    (f'webhook_url = "https://api.telegram.org:0/{BOT_SECRET}"',
     "alerts.webhook_url: must be an https://"),
    (f'webhook_url = "https://api.telegram.org/{BOT_SECRET} x"',
     "alerts.webhook_url: contains a space or control character at position "),
    (f'webhook_url_env = "{TELEGRAM}"', "alerts.webhook_url_env: must be the NAME of an"),
    ("webhook_url = 5", "alerts.webhook_url: must be a string"),
    ("fields = 3", "alerts.fields: must be a table of strings"),
    ("fields = { chat_id = -1001234 }", 'alerts.fields.chat_id: must be a string (quote it: "'),
    ('fields = { text = "hi" }', "alerts.fields.text: copytrade sets this key in every alert"),
    ('fields = { message = "x" }', "alerts.fields.message: copytrade sets this key in every"),
    ('fields = { source = "x" }', "alerts.fields.source: copytrade sets this key"),
    ("fields = { t = \"" + "x" * 1001 + "\" }", "alerts.fields.t: is 1001 characters long"),
    ("fields = { " + ", ".join(f'k{i} = "v"' for i in range(21)) + " }",
     "alerts.fields: has 21 entries; at most 20"),
    ('fields = { "' + "k" * 65 + '" = "v" }', "alerts.fields: a key is 65 characters long"),
    ("timeout_seconds = 0.1", "alerts.timeout_seconds: must be from 0.5 to 60, not 0.1"),
    ("retries = 11", "alerts.retries: must be a whole number from 0 to 10, not 11"),
    ("retries = 1.5", "alerts.retries: must be a whole number from 0 to 10, not 1.5"),
])
def test_alert_mistakes_are_one_line_and_never_quote_the_url(
        tmp_path: Path, alerts: str, expected: str) -> None:
    message = load_error(tmp_path, text(tail=f"[alerts]\n{alerts}"))
    assert message.startswith(expected)
    assert BOT_SECRET not in message and "s3cr3t" not in message


def test_the_webhook_variable_is_checked_by_validate_without_quoting_it(tmp_path: Path) -> None:
    config = load(tmp_path, text(tail='[alerts]\nwebhook_url_env = "COPYTRADE_HOOK"'))
    assert config.alerts.enabled
    [unset] = alert_problems(config, ENV)
    assert (unset.level, unset.where) == ("warning", "alerts.webhook_url_env")
    assert "COPYTRADE_HOOK is not set" in unset.message
    [bad] = alert_problems(config, {**ENV, "COPYTRADE_HOOK": f"telegram {BOT_SECRET}"})
    assert (bad.level, bad.where) == ("error", "alerts.webhook_url_env")
    assert BOT_SECRET not in bad.message
    assert alert_problems(config, {**ENV, "COPYTRADE_HOOK": TELEGRAM}) == []


def test_plain_http_webhook_to_another_host_is_a_warning_with_dhan_only(tmp_path: Path) -> None:
    alerts = '[alerts]\nwebhook_url = "http://hooks.example/x?key=abc123"'
    [warning] = alert_problems(load(tmp_path, text(tail=alerts)), ENV)
    assert warning.level == "warning"
    assert "abc123" not in warning.message
    sim = load(tmp_path, text('broker = "sim"', tail=alerts))
    assert validate(sim, ENV) == []
    local = load(tmp_path, text(tail='[alerts]\nwebhook_url = "http://127.0.0.1:8181/_sim/alerts"'))
    assert alert_problems(local, ENV) == []


# --- config show --------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    (TELEGRAM, "https://api.telegram.org/…"),
    ("https://ntfy.sh", "https://ntfy.sh"),
    ("https://ntfy.sh/", "https://ntfy.sh/"),
    ("https://ntfy.sh/?auth=abc", "https://ntfy.sh/…"),
    ("http://user:pw@hooks.example:8080/", "http://hooks.example:8080/…"),
    ("http://[::1]:8181/_sim/alerts", "http://[::1]:8181/…"),
    ("http://host/#frag", "http://host/…"),
])
def test_masked_url_keeps_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_show_has_broker_sim_and_alerts_without_the_webhook_path(tmp_path: Path) -> None:
    body = text('broker = "sim"', tail=f'[alerts]\nwebhook_url = "{TELEGRAM}"\n'
                                       'fields = { chat_id = "-100" }')
    config = load(tmp_path, body)
    data = redacted(config, {})
    assert data["broker"] == "sim"
    assert data["sim"] == {"api_url": DEFAULT_SIM_API_URL, "order_ws_url": DEFAULT_SIM_ORDER_WS_URL,
                           "instruments_url": DEFAULT_SIM_INSTRUMENTS_URL}
    assert data["alerts"] == {"webhook_url": "https://api.telegram.org/…", "webhook_url_env": None,
                              "timeout_seconds": 5.0, "retries": 3, "fields": {"chat_id": "-100"}}
    shown = render_toml(data)
    assert BOT_SECRET not in shown
    assert "# webhook_url: https://api.telegram.org/… (path and query not shown)" in shown
    # still a copytrade.toml, meaning the same but for the hidden URL
    again = load(tmp_path, shown)
    assert (again.broker, again.sim, again.leader, again.followers, again.settings) == (
        config.broker, config.sim, config.leader, config.followers, config.settings)
    assert (dict(again.alerts.fields), again.alerts.webhook_url) == ({"chat_id": "-100"}, None)


def test_show_of_a_dhan_config_has_no_sim_table_and_keeps_a_plain_webhook(
        tmp_path: Path) -> None:
    config = load(tmp_path, text(tail='[alerts]\nwebhook_url = "https://ntfy.sh"'))
    shown = render_toml(redacted(config, {}))
    assert "[sim]" not in shown
    assert tomllib.loads(shown)["broker"] == "dhan"
    assert load(tmp_path, shown).alerts == config.alerts


def test_show_names_the_webhook_variable_never_its_value(tmp_path: Path) -> None:
    config = load(tmp_path, text(tail='[alerts]\nwebhook_url_env = "COPYTRADE_HOOK"'))
    data = redacted(config, {})
    assert data["alerts"]["webhook_url_env"] == "COPYTRADE_HOOK"
    assert load(tmp_path, render_toml(data)).alerts == config.alerts


# --- config init's text -------------------------------------------------------------------


def test_sim_urls_from_what_copytrade_sim_prints() -> None:
    urls = sim_urls("http://127.0.0.1:8181/v2", "ws://127.0.0.1:8182")
    assert urls.is_default
    assert urls.alerts_url == "http://127.0.0.1:8181/_sim/alerts"
    other = sim_urls("http://127.0.0.1:40123/", "ws://127.0.0.1:40124/")
    assert (other.api_url, other.order_ws_url, other.instruments_url) == (
        "http://127.0.0.1:40123/v2", "ws://127.0.0.1:40124",
        "http://127.0.0.1:40123/api-data/api-scrip-master.csv")
    assert not other.is_default
    # without --sim-ws: the emulator's default WS port on the same host
    assert sim_urls("http://[::1]:9000/v2").order_ws_url == "ws://[::1]:8182"


@pytest.mark.parametrize(("rest", "ws", "expected"), [
    ("127.0.0.1:8181", None, "--sim: expected the emulator's REST URL"),
    ("ws://127.0.0.1:8181", None, "--sim: expected"),
    ("http://127.0.0.1:8181/v1", None, "--sim: 'http://127.0.0.1:8181/v1' is not the emulator's"),
    ("http://127.0.0.1:0/v2", None, "--sim: expected"),
    ("http://127.0.0.1:8181/v2", "http://127.0.0.1:8182", "--sim-ws: expected"),
    ("http://127.0.0.1:8181/v2", "ws://", "--sim-ws: expected"),
])
def test_sim_urls_refuse_what_is_not_the_emulator(rest: str, ws: str | None,
                                                  expected: str) -> None:
    with pytest.raises(UsageError, match="^" + expected.replace("(", r"\(").replace(".", r"\.")):
        sim_urls(rest, ws)


def test_followers_from_flags() -> None:
    assert parse_follower(" mum = 1000000009 ") == FollowerSpec("mum", "1000000009", 1.0)
    for bad, words in (("mum", "write NAME=CLIENT_ID"), ("-x=1", "a follower name is"),
                       ("mum=", "a Dhan client id"), ("mum=a b", "a Dhan client id")):
        with pytest.raises(UsageError, match=words):
            parse_follower(bad)


def test_each_account_and_name_once() -> None:
    with pytest.raises(UsageError, match="client 1 is already the leader"):
        check_accounts("1", (FollowerSpec("a", "1"),))
    with pytest.raises(UsageError, match="two followers are called 'A'"):
        check_accounts("1", (FollowerSpec("a", "2"), FollowerSpec("A", "3")))
    with pytest.raises(UsageError, match="no follower"):
        check_accounts("1", ())


def test_the_sim_text_loads_and_validates_clean(tmp_path: Path) -> None:
    for urls in (sim_urls("http://127.0.0.1:8181/v2"), sim_urls("http://10.1.2.3:7000/v2")):
        config = load(tmp_path, config_text("1000000001", SIM_FOLLOWERS, urls))
        assert config.broker == "sim"
        assert config.leader.api_url == urls.api_url
        assert config.settings.instruments_url == urls.instruments_url
        assert config.alerts.webhook_url == urls.alerts_url
        assert [(f.name, f.sizing.value) for f in config.followers] == [
            ("family-1", 1.0), ("family-2", 2.0)]
        tokens = {f"DHAN_TOKEN_{cid}": sim_token(cid)
                  for cid in ("1000000001", "1000000002", "1000000003")}
        assert validate(config, tokens) == []
    assert "[sim]" not in tomllib.loads(config_text("1", SIM_FOLLOWERS, sim_urls(
        "http://127.0.0.1:8181/v2")))


def test_the_dhan_text_loads_with_sizing_and_hints(tmp_path: Path) -> None:
    followers = (FollowerSpec("mum", "2", 0.5),)
    body = config_text("1", followers)
    config = load(tmp_path, body)
    assert (config.broker, config.sim, config.followers[0].sizing.value) == ("dhan", None, 0.5)
    assert "# [alerts]" in body and "source_address" in body
    assert all(len(line) <= 100 for line in body.splitlines())
