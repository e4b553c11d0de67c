"""`copytrade sim order|modify|cancel` against a running emulator, as a paper trader uses them:
each command's one line, and the emulator's order book showing exactly what was asked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dhanhq import dhanhq
from simtools import LEADER_ID

from copytrade.cli.app import run
from copytrade.cli.exit_codes import ExitCode
from copytrade.sim.server import Emulator


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no copytrade.toml: the user's own is never read."""
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path))
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(["sim", *args])
    out, err = capsys.readouterr()
    return code, out, err


def orders(sim: Emulator, client_id: str = LEADER_ID) -> dict[str, dict]:
    account = sim.snapshot()["accounts"].get(client_id, {"orders": []})
    return {row["orderId"]: row for row in account["orders"]}


def only_order_id(out: str, verb: str) -> str:
    words = out.split()
    assert out.count("\n") == 1 and words[0] == verb, out
    return words[1]


def test_place_modify_and_cancel_show_in_the_order_book(
        sim: Emulator, api: dhanhq, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "order", "buy", "reliance", "10", "--url", sim.rest_url)
    assert (code, err) == (ExitCode.OK, "")
    market_id = only_order_id(out, "placed")
    assert out == (f"placed {market_id} BUY 10 RELIANCE (NSE_EQ, 2885) MARKET as {LEADER_ID}: "
                   "TRADED\n")
    (row,) = api.get_order_list()["data"]  # through the SDK, as follow reads it
    assert (row["orderId"], row["securityId"], row["transactionType"], row["quantity"],
            row["orderType"], row["productType"], row["orderStatus"]) == (
        market_id, "2885", "BUY", 10, "MARKET", "INTRADAY", "TRADED")

    base = sim.rest_url.removesuffix("/v2")  # --url is accepted without /v2 too
    code, out, err = cli(capsys, "order", "SELL", "TCS", "5", "--limit", "3250", "--product",
                         "cnc", "--url", base)
    assert (code, err) == (ExitCode.OK, "")
    limit_id = only_order_id(out, "placed")
    assert out.endswith(f"SELL 5 TCS (NSE_EQ, 11536) LIMIT 3250 as {LEADER_ID}: PENDING\n")
    assert orders(sim)[limit_id]["price"] == 3250 and orders(sim)[limit_id]["productType"] == "CNC"

    code, out, err = cli(capsys, "modify", limit_id, "--price", "3260.5", "--quantity", "8",
                         "--url", base)
    assert (code, err) == (ExitCode.OK, "")
    assert out == (f"modified {limit_id} SELL 8 TCS (NSE_EQ, 11536) LIMIT 3260.5 as "
                   f"{LEADER_ID}: PENDING\n")
    changed = orders(sim)[limit_id]
    assert (changed["quantity"], changed["price"], changed["orderType"]) == (8, 3260.5, "LIMIT")

    code, out, err = cli(capsys, "cancel", limit_id, "--url", base)
    assert (code, err) == (ExitCode.OK, "")
    assert out.startswith(f"cancelled {limit_id} SELL 8 TCS") and out.endswith(": CANCELLED\n")
    assert orders(sim)[limit_id]["orderStatus"] == "CANCELLED"
    assert len(orders(sim)) == 2  # nothing else was placed


def write_config(path: Path, sim: Emulator) -> Path:
    path.write_text(
        'broker = "sim"\n\n'
        f'[sim]\napi_url = "{sim.rest_url}"\norder_ws_url = "{sim.ws_url}"\n'
        f'instruments_url = "{sim.scrip_master_url}"\n\n'
        '[leader]\nclient_id = "1000000011"\n\n'
        '[[followers]]\nname = "family-1"\nclient_id = "1000000012"\nmultiplier = 1\n')
    path.chmod(0o600)
    return path


def test_accounts_and_the_emulator_url_come_from_the_configuration(
        sim: Emulator, empty_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(empty_home / "copytrade.toml", sim)  # the home's: read without --config
    code, out, err = cli(capsys, "order", "BUY", "SBIN", "3")
    assert (code, err) == (ExitCode.OK, ""), err
    assert out.endswith("as 1000000011: TRADED\n")
    other = write_config(empty_home / "other.toml", sim)
    code, out, err = cli(capsys, "order", "BUY", "1594", "4", "--account", "FAMILY-1",
                         "--config", str(other))
    assert (code, err) == (ExitCode.OK, ""), err
    assert "BUY 4 INFY (NSE_EQ, 1594) MARKET as 1000000012: TRADED" in out
    assert [row["quantity"] for row in orders(sim, "1000000011").values()] == [3]
    assert [row["quantity"] for row in orders(sim, "1000000012").values()] == [4]
    code, _, err = cli(capsys, "order", "BUY", "SBIN", "1", "--account", "family-9")
    assert code == ExitCode.USAGE and "family-1" in err  # names the followers there are


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


HOSTILE = {
    "unknown symbol": (("order", "BUY", "RELIANC", "1"), ExitCode.NOT_FOUND,
                       "closest: RELIANCE (NSE_EQ, 2885), RELIANCE (BSE_EQ, 500325)"),
    "unknown security id": (("order", "BUY", "99999", "1"), ExitCode.NOT_FOUND,
                            "no instrument '99999'"),
    "zero quantity": (("order", "BUY", "RELIANCE", "0"), ExitCode.USAGE, "not '0'"),
    "negative quantity": (("order", "BUY", "RELIANCE", "-5"), ExitCode.USAGE, "not '-5'"),
    "fractional quantity": (("order", "BUY", "RELIANCE", "1.5"), ExitCode.USAGE, "not '1.5'"),
    "not a lot multiple": (("order", "BUY", "NIFTY-Dec2026-FUT", "100"), ExitCode.USAGE,
                           "lot size 65: e.g. 65 or 130"),
    "bad side": (("order", "HOLD", "RELIANCE", "1"), ExitCode.USAGE, "SIDE must be"),
    "bad product": (("order", "BUY", "RELIANCE", "1", "--product", "NRML"), ExitCode.USAGE,
                    "--product must be"),
    "negative limit": (("order", "BUY", "RELIANCE", "1", "--limit", "-5"), ExitCode.USAGE,
                       "--limit must be a price above 0"),
    "name without config": (("order", "BUY", "RELIANCE", "1", "--account", "family-1"),
                            ExitCode.USAGE, "leader or a client id"),
    "unknown order id (modify)": (("modify", "100000009999", "--price", "1"),
                                  ExitCode.NOT_FOUND, "no order '100000009999'"),
    "unknown order id (cancel)": (("cancel", "nope"), ExitCode.NOT_FOUND, "no order 'nope'"),
    "nothing to modify": (("modify", "1"), ExitCode.USAGE, "nothing to change"),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE)
def test_hostile_arguments_are_one_line_and_place_nothing(
        sim: Emulator, capsys: pytest.CaptureFixture[str],
        case: tuple[tuple[str, ...], int, str]) -> None:
    args, expected, said = case
    code, out, err = cli(capsys, *args, "--url", sim.rest_url)
    assert code == expected, err
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert said in err
    assert orders(sim) == {}


def test_an_emulator_that_is_not_running_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = cli(capsys, "order", "BUY", "RELIANCE", "1", "--url", url)
    assert (code, out) == (ExitCode.BROKER, "")
    assert err == (f"error: no emulator answers at {url} (cannot connect): start one with "
                   "`copytrade sim`, or pass --url\n")


def test_refusals_and_rejections_exit_5(sim: Emulator,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "order", "BUY", "RELIANCE", "1", "--url", sim.rest_url)
    filled = only_order_id(out, "placed")
    code, out, err = cli(capsys, "cancel", filled, "--url", sim.rest_url)
    assert (code, out) == (ExitCode.BROKER, "")
    assert err.count("\n") == 1 and f"refused: DH-906 Order {filled} is TRADED" in err
    code, out, err = cli(capsys, "modify", filled, "--price", "1", "--account", "1000000002",
                         "--url", sim.rest_url)
    assert code == ExitCode.NOT_FOUND and f"pass --account {LEADER_ID}" in err
    # Placed, then refused by the RMS: the line says why, and scripts see exit 5.
    code, out, err = cli(capsys, "order", "BUY", "RELIANCE", "100000", "--url", sim.rest_url)
    assert (code, err) == (ExitCode.BROKER, "")
    assert ": REJECTED (RMS:Margin Exceeds" in out and out.count("\n") == 1


def test_a_real_process_places_a_limit_order(sim: Emulator, empty_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "copytrade", "sim", "order", "BUY", "HDFCBANK", "7", "--limit",
         "1600", "--url", sim.rest_url], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COPYTRADE_HOME": str(empty_home)})
    assert (done.returncode, done.stderr) == (0, "")
    order_id = only_order_id(done.stdout, "placed")
    assert done.stdout == (f"placed {order_id} BUY 7 HDFCBANK (NSE_EQ, 1333) LIMIT 1600 as "
                           f"{LEADER_ID}: PENDING\n")
    row = orders(sim)[order_id]
    assert (row["quantity"], row["price"], row["orderStatus"]) == (7, 1600, "PENDING")
