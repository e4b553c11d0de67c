"""An emulated order and its two wire shapes: the REST order book row and the stream frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from copytrade.sim.clock import ist_text
from copytrade.sim.instruments import Instrument

OPEN_STATUSES = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})
# Products whose orders have legs (entry, stop-loss, target) under one order id.
LEGGED_PRODUCTS = ("BO", "CO")
ENTRY_LEG = "ENTRY_LEG"

# Dhan's stream spells products and order types in short codes.
PRODUCT_CODES = {"CNC": "C", "INTRADAY": "I", "MARGIN": "M", "MTF": "F", "CO": "V", "BO": "B"}
PRODUCT_NAMES = {"CNC": "CNC", "INTRADAY": "INTRADAY", "MARGIN": "MARGIN", "MTF": "MTF",
                 "CO": "CO", "BO": "BO"}
ORDER_TYPE_CODES = {"LIMIT": "LMT", "MARKET": "MKT", "STOP_LOSS": "SL", "STOP_LOSS_MARKET": "SLM"}
LEG_NUMBERS = {"ENTRY_LEG": 1, "STOP_LOSS_LEG": 2, "TARGET_LEG": 3}


def frame_status(status: str) -> str:
    """The stream's title-case status words, e.g. PART_TRADED -> Part_Traded."""
    return status.title()


@dataclass
class Trade:
    trade_id: str
    order: SimOrder
    quantity: int
    price: float
    time: datetime

    def to_rest(self) -> dict:
        order = self.order
        return {
            "dhanClientId": order.client_id,
            "orderId": order.order_id,
            "exchangeOrderId": order.exchange_order_id,
            "exchangeTradeId": self.trade_id,
            "transactionType": order.transaction_type,
            "exchangeSegment": order.instrument.segment,
            "productType": order.product_type,
            "orderType": order.order_type,
            "tradingSymbol": order.instrument.symbol,
            "customSymbol": order.instrument.display_name,
            "securityId": order.instrument.security_id,
            "tradedQuantity": self.quantity,
            "tradedPrice": self.price,
            "createTime": ist_text(self.time),
            "updateTime": ist_text(self.time),
            "exchangeTime": ist_text(self.time),
            "drvExpiryDate": order.instrument.expiry or "NA",
            "drvOptionType": order.instrument.option_type or "NA",
            "drvStrikePrice": order.instrument.strike,
        }


@dataclass
class SimOrder:
    order_id: str
    exchange_order_id: str
    client_id: str
    source: str  # "P" API, "N" Dhan's web/app
    instrument: Instrument
    transaction_type: str
    product_type: str
    order_type: str
    validity: str
    quantity: int
    disclosed_quantity: int
    price: float
    trigger_price: float
    after_market_order: bool
    amo_time: str
    correlation_id: str
    created: datetime
    updated: datetime
    leg_name: str = ENTRY_LEG
    status: str = "TRANSIT"
    filled_quantity: int = 0
    average_price: float = 0.0
    last_fill_price: float = 0.0
    triggered: bool = False
    modifications: int = 0
    reason: str = ""
    oms_error_code: str = ""
    bo_profit_value: float | None = None
    bo_stop_loss_value: float | None = None
    trades: list[Trade] = field(default_factory=list)
    # A BO/CO entry's stop-loss and target legs (same order id), once the entry has ended.
    exit_legs: list[SimOrder] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_legged(self) -> bool:
        return self.product_type in LEGGED_PRODUCTS

    @property
    def legs(self) -> tuple[SimOrder, ...]:
        """This order's legs, entry first: itself and its exit legs."""
        return (self, *self.exit_legs)

    def to_rest(self) -> dict:
        inst = self.instrument
        return {
            "dhanClientId": self.client_id,
            "orderId": self.order_id,
            "exchangeOrderId": self.exchange_order_id,
            "correlationId": self.correlation_id,
            "orderStatus": self.status,
            "transactionType": self.transaction_type,
            "exchangeSegment": inst.segment,
            "productType": self.product_type,
            "orderType": self.order_type,
            "validity": self.validity,
            "tradingSymbol": inst.symbol,
            "securityId": inst.security_id,
            "quantity": self.quantity,
            "disclosedQuantity": self.disclosed_quantity,
            "price": self.price,
            "triggerPrice": self.trigger_price,
            "afterMarketOrder": self.after_market_order,
            "boProfitValue": self.bo_profit_value,
            "boStopLossValue": self.bo_stop_loss_value,
            "legName": self.leg_name,
            "createTime": ist_text(self.created),
            "updateTime": ist_text(self.updated),
            "exchangeTime": ist_text(self.updated) if self.exchange_order_id else "",
            "drvExpiryDate": inst.expiry or "NA",
            "drvOptionType": inst.option_type or "NA",
            "drvStrikePrice": inst.strike,
            "omsErrorCode": self.oms_error_code,
            "omsErrorDescription": self.reason,
            "algoId": "",
            "remainingQuantity": self.remaining,
            "averageTradedPrice": self.average_price,
            "filledQty": self.filled_quantity,
        }

    def to_frame(self) -> dict:
        """The `Data` of an order_alert frame, PascalCase as in Dhan's published sample."""
        inst = self.instrument
        return {
            "Exchange": inst.exchange,
            "Segment": inst.segment_code,
            "Source": self.source,
            "SecurityId": inst.security_id,
            "ClientId": self.client_id,
            "ExchOrderNo": self.exchange_order_id,
            "OrderNo": self.order_id,
            "Product": PRODUCT_CODES[self.product_type],
            "TxnType": self.transaction_type[0],
            "OrderType": ORDER_TYPE_CODES[self.order_type],
            "Validity": self.validity,
            "DiscQuantity": self.disclosed_quantity,
            "DiscQtyRem": self.disclosed_quantity,
            "RemainingQuantity": self.remaining,
            "Quantity": self.quantity,
            "TradedQty": self.filled_quantity,
            "Price": self.price,
            "TriggerPrice": self.trigger_price,
            "TradedPrice": self.last_fill_price,
            "AvgTradedPrice": self.average_price,
            "AlgoOrdNo": "",
            "OffMktFlag": "1" if self.after_market_order else "0",
            "OrderDateTime": ist_text(self.created),
            "ExchOrderTime": ist_text(self.updated) if self.exchange_order_id else "",
            "LastUpdatedTime": ist_text(self.updated),
            "Remarks": "NA",
            "MktType": "NL",
            "ReasonDescription": self.reason,
            "LegNo": LEG_NUMBERS[self.leg_name],
            "Instrument": inst.instrument,
            "Symbol": inst.symbol,
            "ProductName": PRODUCT_NAMES[self.product_type],
            "Status": frame_status(self.status),
            "LotSize": inst.lot_size,
            "StrikePrice": inst.strike,
            "ExpiryDate": inst.expiry,
            "OptType": inst.option_type or "XX",
            "DisplayName": inst.display_name,
            "Isin": "NA",
            "Series": "EQ" if not inst.is_derivative else "NA",
            "GoodTillDaysDate": "",
            "RefLtp": 0.0,
            "TickSize": inst.tick_size,
            "AlgoId": "0",
            "Multiplier": 1,
            "CorrelationId": self.correlation_id,
        }
