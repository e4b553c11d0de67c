"""The seam between the engine and a broker: what follow, its workers, the reconciler and
cancel-mirror ask of one account. `dhan.rest.DhanAccount` is the real one (talking to
Dhan or to the emulator); tests may hand in an in-memory fake (tests/fakes.py).

`account_for` is the one place an account is built from the configuration (called by the
composition root, copytrade/cli/context.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from copytrade.config import Secret
    from copytrade.config.model import AccountConfig
    from copytrade.dhan.rest import DhanAccount, Outcome, PlaceRequest
    from copytrade.dhan.token_api import TokenApi


class Broker(Protocol):
    client_id: str
    on_bad_row: Callable[[str, str], None]  # told once per unreadable order-book row

    def place(self, request: PlaceRequest, correlation_id: str, *,
              slice_order: bool) -> Outcome: ...

    def modify(self, order_id: str, *, order_type: str, quantity: int, price: float,
               trigger_price: float, disclosed_quantity: int, validity: str,
               leg_name: str = "ENTRY_LEG") -> Outcome: ...

    def cancel(self, order_id: str) -> Outcome: ...

    def order(self, order_id: str, leg: int = 1) -> Outcome: ...

    def order_book(self) -> Outcome: ...

    def order_by_correlation(self, correlation_id: str) -> Outcome: ...

    def positions(self) -> Outcome: ...

    def available_funds(self) -> float | None: ...

    def last_price(self, exchange_segment: str, security_id: str) -> float | None: ...


def account_for(account: AccountConfig, token: Secret, *, timeout: float) -> DhanAccount:
    """A configured account over REST: its URL, its egress (Dhan wants each account's
    orders from its own whitelisted IP), its timeout."""
    from copytrade.dhan.rest import DhanAccount

    return DhanAccount(account.client_id, token.reveal(), api_url=account.api_url,
                       timeout=timeout, proxy=account.egress.proxy,
                       source_address=account.egress.source_address)


class SwitchableAccount:
    """An account whose token can change while follow runs: every user (the worker, its
    executor, the reconciler, the streams' catch-ups) holds this one object, and a renewed
    or reloaded token swaps the account behind it at once. A call already on its way
    finishes with the account it started on (the old token stays valid meanwhile)."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner
        self.client_id = inner.client_id

    def __repr__(self) -> str:  # never the token
        return f"SwitchableAccount({self.client_id})"

    def switch(self, inner: Broker) -> None:
        inner.on_bad_row = self._inner.on_bad_row
        self._inner = inner  # one attribute store: atomic for the other threads

    @property
    def current(self) -> Broker:
        return self._inner

    @property
    def on_bad_row(self) -> Callable[[str, str], None]:
        return self._inner.on_bad_row

    @on_bad_row.setter
    def on_bad_row(self, callback: Callable[[str, str], None]) -> None:
        self._inner.on_bad_row = callback

    # Explicit methods, not __getattr__ alone: the place path pays one call, no lookup miss.
    def place(self, request: PlaceRequest, correlation_id: str, *,
              slice_order: bool) -> Outcome:
        return self._inner.place(request, correlation_id, slice_order=slice_order)

    def modify(self, order_id: str, **changes: object) -> Outcome:
        return self._inner.modify(order_id, **changes)  # type: ignore[arg-type]

    def cancel(self, order_id: str) -> Outcome:
        return self._inner.cancel(order_id)

    def order(self, order_id: str, leg: int = 1) -> Outcome:
        return self._inner.order(order_id, leg)

    def order_book(self) -> Outcome:
        return self._inner.order_book()

    def order_by_correlation(self, correlation_id: str) -> Outcome:
        return self._inner.order_by_correlation(correlation_id)

    def positions(self) -> Outcome:
        return self._inner.positions()

    def available_funds(self) -> float | None:
        return self._inner.available_funds()

    def last_price(self, exchange_segment: str, security_id: str) -> float | None:
        return self._inner.last_price(exchange_segment, security_id)

    def __getattr__(self, name: str) -> object:  # the rest of DhanAccount (fund_limits...)
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_inner"], name)


def token_api_for(account: AccountConfig, token: Secret, *, timeout: float) -> TokenApi:
    """The account's profile and RenewToken calls, over the same URL and egress."""
    from copytrade.dhan.token_api import TokenApi

    return TokenApi(account.client_id, token, api_url=account.api_url, timeout=timeout,
                    proxy=account.egress.proxy, source_address=account.egress.source_address)
