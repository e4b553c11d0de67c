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


class Broker(Protocol):
    client_id: str
    on_bad_row: Callable[[str, str], None]  # told once per unreadable order-book row

    def place(self, request: PlaceRequest, correlation_id: str, *,
              slice_order: bool) -> Outcome: ...

    def modify(self, order_id: str, *, order_type: str, quantity: int, price: float,
               trigger_price: float, disclosed_quantity: int, validity: str,
               leg_name: str = "ENTRY_LEG") -> Outcome: ...

    def cancel(self, order_id: str) -> Outcome: ...

    def order(self, order_id: str) -> Outcome: ...

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
