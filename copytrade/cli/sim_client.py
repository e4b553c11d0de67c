"""A running emulator's control plane and scrip master, as `copytrade sim order|modify|cancel`
reach them: every failure is one line (BrokerError, NotFoundError), never a traceback.

Imported inside the commands only: it loads requests.
"""

from __future__ import annotations

import difflib
from typing import Any

import requests

from copytrade.dhan.instruments import InstrumentRow, parse_scrip_master
from copytrade.errors import BrokerError, NotFoundError

TIMEOUT_SECONDS = 5.0  # control calls are never delayed or faulted: a slow one is a dead one
SCRIP_MASTER_PATH = "/api-data/api-scrip-master.csv"
# Which row a symbol listed in several segments means (RELIANCE: NSE_EQ, not BSE_EQ).
SEGMENT_PREFERENCE = ("NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY",
                      "MCX_COMM")
MAX_SUGGESTIONS = 5


class SimClient:
    def __init__(self, base: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.base = base  # http://host:port, no /v2
        self.timeout = timeout
        self.session = requests.Session()

    # ---- reads --------------------------------------------------------------------------

    def instrument(self, wanted: str, segment: str | None = None) -> InstrumentRow:
        """The instrument whose trading symbol (any case) or security id is `wanted`, from
        the scrip master the emulator serves; NotFoundError naming the closest symbols."""
        rows = [row for row in parse_scrip_master(self._get(SCRIP_MASTER_PATH).text.splitlines())
                if segment is None or row.exchange_segment == segment]
        key = wanted.strip().upper()
        exact = [row for row in rows if key in (row.symbol.upper(), row.security_id)]
        if exact:
            return min(exact, key=lambda row: _preference(row.exchange_segment))
        where = f" in {segment}" if segment else ""
        near = closest(rows, key)
        hint = (f"; closest: {', '.join(near)}" if near
                else f"; the emulator's instruments: {self.base}{SCRIP_MASTER_PATH}")
        raise NotFoundError(f"no instrument {wanted.strip()[:40]!r}{where} on the emulator at "
                            f"{self.base}{hint}")

    def order(self, client_id: str, order_id: str) -> dict[str, Any]:
        """The account's order row from the emulator's snapshot; NotFoundError (saying whose
        it is, when another account's) otherwise."""
        accounts = self._json(self._get("/_sim/snapshot")).get("accounts") or {}
        owner = None
        for account_id, account in accounts.items():
            for row in account.get("orders") or ():
                if str(row.get("orderId")) == order_id:
                    if account_id == client_id:
                        return row
                    owner = account_id
        hint = f"; it is account {owner}'s: pass --account {owner}" if owner else ""
        raise NotFoundError(f"no order {order_id[:64]!r} of account {client_id} on the "
                            f"emulator at {self.base}{hint}")

    # ---- control calls ------------------------------------------------------------------

    def control(self, path: str, body: dict[str, Any]) -> Any:
        """POST /_sim{path}; its `result`."""
        return self._json(self._request("POST", f"/_sim{path}", body)).get("result")

    # ---- HTTP ---------------------------------------------------------------------------

    def _get(self, path: str) -> requests.Response:
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: object) -> requests.Response:
        try:
            reply = self.session.request(method, self.base + path, json=body,
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise BrokerError(f"no emulator answers at {self.base} ({_why(exc)}): start one "
                              "with `copytrade sim`, or pass --url") from None
        if reply.status_code != 200:
            raise BrokerError(self._refusal(reply))
        return reply

    def _json(self, reply: requests.Response) -> dict[str, Any]:
        try:
            payload = reply.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise BrokerError(f"{self.base} does not answer like copytrade's emulator: is "
                              "--url the REST URL `copytrade sim` printed?")
        return payload

    def _refusal(self, reply: requests.Response) -> str:
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "errorCode" in body:
            return (f"the emulator at {self.base} refused: {body.get('errorCode')} "
                    f"{str(body.get('errorMessage'))[:300]}")
        return (f"{self.base} does not answer like copytrade's emulator (HTTP "
                f"{reply.status_code}): is --url the REST URL `copytrade sim` printed?")


def closest(rows: list[InstrumentRow], key: str) -> list[str]:
    """Up to MAX_SUGGESTIONS instruments near `key`: symbols starting with it, then those
    containing it, then similar spellings."""
    symbols = sorted({row.symbol.upper() for row in rows})
    containing = sorted((s for s in symbols if key and key in s),
                        key=lambda s: (not s.startswith(key), s))
    similar = difflib.get_close_matches(key, symbols, n=MAX_SUGGESTIONS, cutoff=0.6)
    chosen = list(dict.fromkeys([*containing, *similar]))[:MAX_SUGGESTIONS]
    found = [row for symbol in chosen for row in sorted(
        (r for r in rows if r.symbol.upper() == symbol),
        key=lambda r: _preference(r.exchange_segment))]
    return [f"{row.symbol} ({row.exchange_segment}, {row.security_id})"
            for row in found[:MAX_SUGGESTIONS]]


def _preference(segment: str) -> int:
    return SEGMENT_PREFERENCE.index(segment) if segment in SEGMENT_PREFERENCE else 99


def _why(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return type(exc).__name__
