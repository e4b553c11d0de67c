"""`copytrade sim order|modify|cancel`: place, modify and cancel orders on a running emulator
as Dhan's app would (the control plane's `/_sim/app/...`), so `follow` mirrors them like a
leader's own. The HTTP side is sim_client.py; this parses, resolves and prints one line."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from copytrade.cli.config_cmd import ConfigOption
from copytrade.errors import UsageError

if TYPE_CHECKING:
    from copytrade.cli.sim_client import SimClient
    from copytrade.config import Config

DEFAULT_BASE_URL = "http://127.0.0.1:8181"  # `copytrade sim`'s default REST port
DEFAULT_LEADER_ID = "1000000001"  # the leader `copytrade config init --sim` writes
SIDES = ("BUY", "SELL")
_WHOLE = re.compile(r"\+?\d{1,12}")
_CLIENT_ID = re.compile(r"\d{1,32}")  # Dhan client ids are digits; a name is a follower's

AccountOption = Annotated[str, typer.Option(
    "--account", metavar="ACCOUNT",
    help="Whose order: leader, a follower's name or a client id. leader is the configured "
         f"leader (without a configuration: {DEFAULT_LEADER_ID}).")]
UrlOption = Annotated[str | None, typer.Option(
    "--url", metavar="REST_URL",
    help="The emulator's REST URL, with or without /v2 (default: the configuration's sim "
         f"URL when broker = \"sim\", else {DEFAULT_BASE_URL}).")]
PriceOption = Annotated[float | None, typer.Option(
    "--price", metavar="P", help="New limit price (a MARKET order becomes LIMIT).")]
TriggerOption = Annotated[float | None, typer.Option(
    "--trigger", metavar="P", help="Stop-loss trigger price (makes it a stop-loss order).")]


def order(
    side: Annotated[str, typer.Argument(metavar="SIDE", help="BUY or SELL (any case).")],
    symbol: Annotated[str, typer.Argument(
        metavar="SYMBOL", help="Trading symbol (any case), e.g. RELIANCE, or a security id.")],
    quantity: Annotated[str, typer.Argument(
        metavar="QUANTITY", help="Units: a positive multiple of the lot size.")],
    limit: Annotated[float | None, typer.Option(
        "--limit", metavar="PRICE", help="Limit price (default: a MARKET order).")] = None,
    trigger: TriggerOption = None,
    product: Annotated[str, typer.Option(
        "--product", metavar="PRODUCT",
        help="INTRADAY, CNC, MARGIN, MTF, CO or BO (any case).")] = "INTRADAY",
    segment: Annotated[str | None, typer.Option(
        "--segment", metavar="SEG", help="Exchange segment, e.g. NSE_EQ (default: where the "
        "symbol is listed, NSE first).")] = None,
    account: AccountOption = "leader",
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Place an order on a running emulator as Dhan's app would.

    Prints one line: `placed ORDER_ID SIDE QUANTITY SYMBOL (SEGMENT, SECURITY_ID) TYPE as
    CLIENT_ID: STATUS`. Exit 0 when placed, 2 for a bad argument, 3 for a bad
    configuration, 5 when the emulator cannot be reached, refuses (DH-9xx) or rejects the
    order, 9 for an unknown symbol (the closest ones are named).
    """
    from copytrade.config.model import PRODUCTS, SEGMENTS

    wanted_side = _choice(side, SIDES, "SIDE")
    units = parse_quantity(quantity, "QUANTITY")
    wanted_product = _choice(product, tuple(sorted(PRODUCTS)), "--product")
    wanted_segment = _choice(segment, tuple(sorted(SEGMENTS)), "--segment") if segment else None
    price, trigger_price = _price(limit, "--limit"), _price(trigger, "--trigger")
    target = resolve_target(account, url, config)
    client = target.client()
    instrument = client.instrument(symbol, wanted_segment)
    check_lots(units, instrument.lot_size, instrument.symbol)
    body = {"transactionType": wanted_side, "exchangeSegment": instrument.exchange_segment,
            "productType": wanted_product, "validity": "DAY",
            "orderType": order_type(price is not None, trigger_price is not None),
            "securityId": instrument.security_id, "quantity": units,
            "price": price or 0, "triggerPrice": trigger_price or 0}
    ids = client.control("/app/place", {"client_id": target.client_id, "order": body})
    _report("placed", client.order(target.client_id, str(ids[0])), target.client_id)


def modify(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order to change.")],
    price: PriceOption = None,
    quantity: Annotated[str | None, typer.Option(
        "--quantity", metavar="Q", help="New total quantity in units (lot multiple).")] = None,
    trigger: TriggerOption = None,
    account: AccountOption = "leader",
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Modify an open order on a running emulator as Dhan's app would.

    What is not given stays as it is. Prints one line, `modified ...`, the order as it now
    is. Exit 0, 2 (bad argument, nothing to change), 3, 5 (unreachable, refused: e.g. the
    order is no longer open) or 9 (no such order of the account).
    """
    if price is None and quantity is None and trigger is None:
        raise UsageError("nothing to change: give --price, --quantity or --trigger")
    units = parse_quantity(quantity, "--quantity") if quantity is not None else None
    new_price, new_trigger = _price(price, "--price"), _price(trigger, "--trigger")
    target = resolve_target(account, url, config)
    client = target.client()
    row = client.order(target.client_id, order_id.strip())
    if units is not None:
        instrument = client.instrument(str(row["securityId"]), row["exchangeSegment"])
        check_lots(units, instrument.lot_size, instrument.symbol)
    kind = str(row.get("orderType"))
    body = {"orderType": order_type(new_price is not None or kind in ("LIMIT", "STOP_LOSS"),
                                    new_trigger is not None or kind.startswith("STOP_LOSS")),
            "quantity": units or row["quantity"],
            "price": new_price or row.get("price") or 0,
            "triggerPrice": new_trigger or row.get("triggerPrice") or 0,
            "disclosedQuantity": row.get("disclosedQuantity") or 0,
            "validity": row.get("validity") or "DAY", "legName": row.get("legName") or "NA"}
    client.control("/app/modify", {"client_id": target.client_id,
                                   "order_id": str(row["orderId"]), "order": body})
    _report("modified", client.order(target.client_id, str(row["orderId"])), target.client_id)


def cancel(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order to cancel.")],
    account: AccountOption = "leader",
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Cancel an open order on a running emulator as Dhan's app would.

    Prints one line, `cancelled ...`. Exit 0, 3, 5 (unreachable, refused: e.g. the order
    is already filled or cancelled) or 9 (no such order of the account).
    """
    target = resolve_target(account, url, config)
    client = target.client()
    row = client.order(target.client_id, order_id.strip())
    client.control("/app/cancel", {"client_id": target.client_id,
                                   "order_id": str(row["orderId"])})
    _report("cancelled", client.order(target.client_id, str(row["orderId"])),
            target.client_id)


# ---- whose order, on which emulator -------------------------------------------------------

@dataclass(frozen=True)
class Target:
    client_id: str
    base: str  # http://host:port

    def client(self) -> SimClient:
        from copytrade.cli.sim_client import SimClient  # loads requests

        return SimClient(self.base)


def resolve_target(account: str, url: str | None, config_path: Path | None) -> Target:
    """The client id ACCOUNT names and the emulator to reach. The home's configuration is
    read only when needed (a name to resolve, or no --url); --config's always."""
    wanted = account.strip()
    needed = config_path is not None or url is None or not _CLIENT_ID.fullmatch(wanted)
    config = _load_config(config_path) if needed else None
    client_id, api_url = account_of(wanted, config)
    if url is not None:
        return Target(client_id, base_url(url))
    return Target(client_id, base_url(api_url) if api_url else DEFAULT_BASE_URL)


def account_of(wanted: str, config: Config | None) -> tuple[str, str | None]:
    """(client id, the account's sim api_url when broker = "sim", else None)."""
    from copytrade.config.token_accounts import find_account
    from copytrade.config.tokens import TOKEN_LENGTH
    from copytrade.errors import NotFoundError

    if config is None:
        if wanted.lower() == "leader":
            return DEFAULT_LEADER_ID, None
        if _CLIENT_ID.fullmatch(wanted):
            return wanted, None
        # Not quoted when as long as a token: a token put here by mistake is never echoed.
        shown = f", not {wanted!r}" if len(wanted) < TOKEN_LENGTH[0] else ""
        raise UsageError("--account must be leader or a client id (digits) when there is no "
                         f"configuration{shown}")
    on_sim = config.broker == "sim"
    try:
        found = find_account(config, wanted).account  # as `copytrade token set` names them
    except NotFoundError as exc:
        if not _CLIENT_ID.fullmatch(wanted):  # any account on the emulator, by its id
            raise UsageError(f"--account: {exc.message}") from None
        return wanted, config.leader.api_url if on_sim else None
    return found.client_id, found.api_url if on_sim else None


def _load_config(path: Path | None) -> Config | None:
    """The given file (which must exist), else the home's copytrade.toml if there is one."""
    from copytrade.config import load_config
    from copytrade.home import home_paths

    if path is None:
        path = home_paths().config_file
        if not path.is_file():
            return None
    return load_config(path)


def base_url(url: str) -> str:
    """http://host:port from the emulator's REST URL, given with or without /v2."""
    from copytrade.config.urls import url_problem  # spaces, control characters, bad ports

    text = url.strip().rstrip("/").removesuffix("/v2").rstrip("/")
    parts = urlsplit(text)
    if (url_problem(text) or parts.scheme not in ("http", "https") or not parts.netloc
            or parts.path):
        raise UsageError(f"--url must be the emulator's REST URL, e.g. {DEFAULT_BASE_URL}/v2, "
                         f"not {url.strip()[:80]!r}")
    return text


# ---- arguments ----------------------------------------------------------------------------

def parse_quantity(text: str, name: str) -> int:
    cleaned = text.strip()
    if not _WHOLE.fullmatch(cleaned) or int(cleaned) == 0:
        raise UsageError(f"{name} must be a positive whole number of units, not "
                         f"{cleaned[:20]!r}")
    return int(cleaned)


def check_lots(units: int, lot_size: int, symbol: str) -> None:
    if units % lot_size:
        lower = units - units % lot_size
        near = f"{lower} or {lower + lot_size}" if lower else str(lot_size)
        raise UsageError(f"quantity {units} is not a multiple of {symbol}'s lot size "
                         f"{lot_size}: e.g. {near}")


def order_type(priced: bool, triggered: bool) -> str:
    if triggered:
        return "STOP_LOSS" if priced else "STOP_LOSS_MARKET"
    return "LIMIT" if priced else "MARKET"


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    wanted = value.strip().upper()
    if wanted not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}, not {value.strip()[:20]!r}")
    return wanted


def _price(value: float | None, name: str) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a price above 0, not {value:g}")
    return value


# ---- the one line -------------------------------------------------------------------------

def order_line(verb: str, row: dict[str, Any], client_id: str) -> str:
    """`placed 7 BUY 10 RELIANCE (NSE_EQ, 2885) LIMIT 1300 as 1000000001: PENDING`."""
    kind = str(row.get("orderType"))
    terms = [kind]
    if kind in ("LIMIT", "STOP_LOSS"):
        terms.append(_number(row.get("price")))
    if kind.startswith("STOP_LOSS"):
        terms.append(f"trigger {_number(row.get('triggerPrice'))}")
    status = str(row.get("orderStatus"))
    reason = " ".join(str(row.get("omsErrorDescription") or "").split())[:200]
    return (f"{verb} {row.get('orderId')} {row.get('transactionType')} {row.get('quantity')} "
            f"{row.get('tradingSymbol')} ({row.get('exchangeSegment')}, {row.get('securityId')})"
            f" {' '.join(terms)} as {client_id}: {status}"
            + (f" ({reason})" if reason and status == "REJECTED" else ""))


def _report(verb: str, row: dict[str, Any], client_id: str) -> None:
    from copytrade.cli.exit_codes import ExitCode
    from copytrade.redact import redact

    typer.echo(redact(order_line(verb, row, client_id)))
    if row.get("orderStatus") == "REJECTED":  # the line says why; scripts see exit 5
        raise typer.Exit(ExitCode.BROKER)


def _number(value: object) -> str:
    try:
        return f"{float(value):.2f}".rstrip("0").rstrip(".")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
