"""The pure parts of `copytrade sim` and `sim order|modify|cancel`: alert lines, URLs,
quantities, order types, accounts and the one line each command prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from copytrade.cli.sim import MAX_ALERT_TEXT, alert_line
from copytrade.cli.sim_client import closest
from copytrade.cli.sim_order import (
    DEFAULT_BASE_URL,
    DEFAULT_LEADER_ID,
    Target,
    account_of,
    base_url,
    check_lots,
    order_line,
    order_type,
    parse_quantity,
    resolve_target,
)
from copytrade.config import load_config
from copytrade.config.init import SIM_LEADER
from copytrade.config.model import DEFAULT_SIM_API_URL
from copytrade.dhan.instruments import InstrumentRow
from copytrade.errors import ConfigError, UsageError

# ---- alert lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "line"), [
    ({"text": "follower family-2 rejected", "kind": "x"}, "alert: follower family-2 rejected"),
    ({"kind": "token_expiring"}, 'alert: {"kind": "token_expiring"}'),
    ({"text": "   ", "n": 1}, 'alert: {"text": " ", "n": 1}'),
    ({"text": 5}, 'alert: {"text": 5}'),
    ([1, "two"], 'alert: [1, "two"]'),
    (None, "alert: null"),
    ({"text": "two\nlines\r\n\tand tabs"}, "alert: two lines and tabs"),
    ({"text": "red \x1b[31m bell \x07"}, "alert: red \ufffd[31m bell \ufffd"),
    ({"text": "lone \ud800 surrogate"}, "alert: lone \ufffd surrogate"),
    ({"text": "₹ 1,400 — ok"}, "alert: ₹ 1,400 — ok"),
], ids=["text", "no text", "blank text", "text not a string", "list", "null", "newlines",
        "escapes", "surrogate", "unicode"])
def test_alert_line(body: object, line: str) -> None:
    assert alert_line(body) == line
    line.encode("utf-8")  # printable on any UTF-8 stdout


def test_alert_line_is_bounded() -> None:
    line = alert_line({"text": "x" * 5000})
    assert len(line) == len("alert: ") + MAX_ALERT_TEXT and line.endswith("…")


# ---- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "base"), [
    ("http://127.0.0.1:8181/v2", "http://127.0.0.1:8181"),
    ("http://127.0.0.1:8181/v2/", "http://127.0.0.1:8181"),
    ("  http://127.0.0.1:8181/ ", "http://127.0.0.1:8181"),
    ("https://sim.example:443", "https://sim.example:443"),
])
def test_base_url(url: str, base: str) -> None:
    assert base_url(url) == base


@pytest.mark.parametrize("url", ["", "127.0.0.1:8181", "ftp://h:1", "http://h:1/v3",
                                 "http://h:1/v2/orders", "http:///v2", "http://h:99999/v2",
                                 "http://h:0", "http://h:81\t81/v2", "http://h :1"])
def test_base_url_refuses_what_is_not_a_rest_url(url: str) -> None:
    with pytest.raises(UsageError, match="--url must be the emulator's REST URL"):
        base_url(url)


@pytest.mark.parametrize(("text", "units"), [("10", 10), (" 65 ", 65), ("+3", 3)])
def test_parse_quantity(text: str, units: int) -> None:
    assert parse_quantity(text, "QUANTITY") == units


@pytest.mark.parametrize("text", ["0", "-5", "1.5", "ten", "", "1e3", "9" * 13, "00"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="QUANTITY must be a positive whole number"):
        parse_quantity(text, "QUANTITY")


def test_check_lots() -> None:
    check_lots(130, 65, "NIFTY")
    with pytest.raises(UsageError, match=r"lot size 65: e\.g\. 65$"):
        check_lots(10, 65, "NIFTY")
    with pytest.raises(UsageError, match=r"e\.g\. 130 or 195$"):
        check_lots(150, 65, "NIFTY")


@pytest.mark.parametrize(("priced", "triggered", "kind"), [
    (False, False, "MARKET"), (True, False, "LIMIT"), (False, True, "STOP_LOSS_MARKET"),
    (True, True, "STOP_LOSS")])
def test_order_type(priced: bool, triggered: bool, kind: str) -> None:
    assert order_type(priced, triggered) == kind


# ---- accounts -------------------------------------------------------------------------------


def test_the_defaults_are_what_config_init_sim_writes() -> None:
    # Spelled out in sim_order.py (its --help must not load the config package): kept equal.
    assert DEFAULT_LEADER_ID == SIM_LEADER
    assert f"{DEFAULT_BASE_URL}/v2" == DEFAULT_SIM_API_URL


def test_accounts_without_a_configuration() -> None:
    assert account_of("leader", None) == ("1000000001", None)
    assert account_of("LEADER", None) == ("1000000001", None)
    assert account_of("1000000003", None) == ("1000000003", None)
    with pytest.raises(UsageError, match="leader or a client id"):
        account_of("family-1", None)


def config_file(tmp_path: Path, top: str) -> Path:
    path = tmp_path / "copytrade.toml"
    path.write_text(top + '[leader]\nclient_id = "2000000001"\n\n[[followers]]\nname = '
                    '"mum"\nclient_id = "2000000002"\nmultiplier = 1\n'
                    'api_url = "http://127.0.0.1:9999/v2"\n')
    path.chmod(0o600)
    return path


def test_accounts_from_a_sim_configuration(tmp_path: Path) -> None:
    config = load_config(config_file(
        tmp_path, 'broker = "sim"\n[sim]\napi_url = "http://127.0.0.1:7000/v2"\n\n'))
    assert account_of("leader", config) == ("2000000001", "http://127.0.0.1:7000/v2")
    assert account_of("Mum", config) == ("2000000002", "http://127.0.0.1:9999/v2")
    assert account_of("2000000002", config) == ("2000000002", "http://127.0.0.1:9999/v2")
    assert account_of("2000000009", config) == ("2000000009", "http://127.0.0.1:7000/v2")
    with pytest.raises(UsageError, match=r"'dad' .* name one of leader, mum,"):
        account_of("dad", config)


def test_leader_is_the_leader_even_beside_a_follower_called_leader(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'broker = "sim"\n')
    path.write_text(path.read_text() + '\n[[followers]]\nname = "Leader"\n'
                    'client_id = "2000000003"\nmultiplier = 1\n')
    config = load_config(path)
    assert account_of("leader", config)[0] == "2000000001"
    assert account_of("2000000003", config)[0] == "2000000003"


@pytest.mark.parametrize("top", [None, ""], ids=["no configuration", "configuration"])
def test_an_account_as_long_as_a_token_is_not_echoed(tmp_path: Path, top: str | None) -> None:
    config = None if top is None else load_config(config_file(tmp_path, top))
    pasted = "tok-PASTED-BY-MISTAKE-7f3a2c"
    with pytest.raises(UsageError) as refused:
        account_of(pasted, config)
    assert "PASTED" not in str(refused.value) and "tok-" not in str(refused.value)


def test_a_dhan_configuration_names_accounts_but_never_its_urls(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ""))
    assert account_of("leader", config) == ("2000000001", None)
    assert account_of("mum", config) == ("2000000002", None)


def test_the_configuration_is_read_only_when_needed(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path))
    (tmp_path / "copytrade.toml").write_text("not toml [")  # read, it would be exit 3
    assert resolve_target("1000000004", "http://127.0.0.1:1/v2", None) == Target(
        "1000000004", "http://127.0.0.1:1")
    with pytest.raises(ConfigError):
        resolve_target("leader", "http://127.0.0.1:1/v2", None)
    with pytest.raises(ConfigError):  # --config is always read: a wrong path is said
        resolve_target("1000000004", "http://127.0.0.1:1", tmp_path / "missing.toml")
    (tmp_path / "copytrade.toml").unlink()  # no configuration: the emulator's defaults
    assert resolve_target("leader", None, None) == Target("1000000001", "http://127.0.0.1:8181")


# ---- what is printed ------------------------------------------------------------------------

ROW = {"orderId": "7", "transactionType": "BUY", "quantity": 10, "tradingSymbol": "RELIANCE",
       "exchangeSegment": "NSE_EQ", "securityId": "2885", "orderType": "MARKET", "price": 0,
       "triggerPrice": 0, "orderStatus": "TRADED", "omsErrorDescription": ""}


@pytest.mark.parametrize(("changes", "line"), [
    ({}, "placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) MARKET as 1000000001: TRADED"),
    ({"orderType": "LIMIT", "price": 1300.0, "orderStatus": "PENDING"},
     "placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) LIMIT 1300 as 1000000001: PENDING"),
    ({"orderType": "STOP_LOSS", "price": 1300.5, "triggerPrice": 1295.05},
     "placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) STOP_LOSS 1300.5 trigger 1295.05 as 1000000001: "
     "TRADED"),
    ({"orderType": "STOP_LOSS_MARKET", "triggerPrice": 1295},
     "placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) STOP_LOSS_MARKET trigger 1295 as 1000000001: "
     "TRADED"),
    ({"orderStatus": "REJECTED", "omsErrorDescription": "RMS:\nMargin  Exceeds"},
     "placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) MARKET as 1000000001: REJECTED (RMS: Margin "
     "Exceeds)"),
], ids=["market", "limit", "stop loss", "stop loss market", "rejected"])
def test_order_line(changes: dict, line: str) -> None:
    assert order_line("placed", {**ROW, **changes}, "1000000001") == line


def test_closest_names_symbols_starting_with_then_containing_then_similar() -> None:
    rows = [InstrumentRow(segment, sid, symbol, 1, 0.05) for segment, sid, symbol in (
        ("BSE_EQ", "500325", "RELIANCE"), ("NSE_EQ", "2885", "RELIANCE"),
        ("NSE_FNO", "1", "BANKNIFTY-FUT"), ("NSE_FNO", "2", "NIFTY-FUT"),
        ("NSE_EQ", "3", "INFY"))]
    assert closest(rows, "RELIANC") == ["RELIANCE (NSE_EQ, 2885)", "RELIANCE (BSE_EQ, 500325)"]
    assert closest(rows, "NIFTY") == ["NIFTY-FUT (NSE_FNO, 2)", "BANKNIFTY-FUT (NSE_FNO, 1)",
                                      "INFY (NSE_EQ, 3)"]
    assert closest(rows, "INFI") == ["INFY (NSE_EQ, 3)"]
    assert closest(rows, "ZZZZ") == []
