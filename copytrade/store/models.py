"""Peewee models: leader orders, mirror orders (the mappings), intents, state events, audit.

The database is bound at open time (`store.db.open_store`); models only describe tables.
"""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database


class LeaderOrder(BaseModel):
    """The latest known state of one leader order, merged from frames and REST reads."""

    order_id = CharField(primary_key=True)
    trading_date = CharField(index=True)  # YYYY-MM-DD, IST
    status = CharField()
    exchange_segment = CharField()
    security_id = CharField()
    symbol = CharField(default="")
    transaction_type = CharField()
    product_type = CharField()
    order_type = CharField()
    validity = CharField()
    quantity = IntegerField()
    traded_quantity = IntegerField(default=0)
    price = FloatField(default=0.0)
    trigger_price = FloatField(default=0.0)
    disclosed_quantity = IntegerField(default=0)
    average_price = FloatField(default=0.0)
    after_market_order = BooleanField(default=False)
    lot_size = IntegerField(null=True)
    placed_in_app = BooleanField(default=False)
    correlation_id = CharField(default="")
    reason = TextField(default="")
    version = CharField(default="")  # ordering key of the report the parameters came from
    leader_updated_at = DateTimeField(null=True)
    first_seen_at = DateTimeField()  # our clock, UTC
    traded_at = DateTimeField(null=True)  # our clock: when we first saw it fully traded
    # What said it last: "stream" (a frame) or "rest" (a book read, lookup, reconciliation);
    # "" for rows older than schema 5. The audit trail records it with each change.
    source = CharField(default="", constraints=[SQL("DEFAULT ''")])  # raw INSERTs too
    recorded_at = DateTimeField(null=True)  # our clock: when this state was last saved
    # Terms the leader's events on the bus carry (issue 12; an agent plans from them):
    # the leader's creation time (staleness), an AMO's time, a BO's distances.
    leader_created_at = DateTimeField(null=True)
    amo_time = CharField(default="", constraints=[SQL("DEFAULT ''")])
    bo_profit_value = FloatField(default=0.0, constraints=[SQL("DEFAULT 0.0")])
    bo_stop_loss_value = FloatField(default=0.0, constraints=[SQL("DEFAULT 0.0")])
    # The leader's net position in the instrument and product before this order (its other
    # working orders on the same side counted), fixed when first recorded: an agent sizes
    # exits from it (it cannot read the leader's positions). None: recorded before schema 7.
    position_before = IntegerField(null=True)


class MirrorOrder(BaseModel):
    """One follower's mirror of one leader order leg: the leader -> follower mapping."""

    id = AutoField()
    leader_order = ForeignKeyField(LeaderOrder, backref="mirrors", on_delete="CASCADE")
    follower = CharField(index=True)
    leg = IntegerField(default=1)
    attempt = IntegerField(default=1)
    correlation_id = CharField(unique=True)
    follower_order_id = CharField(null=True, index=True)  # the first; slices are in `legs`
    # Every follower order of this mirror (one, or the slices of a sliced order):
    # JSON {order_id: [status, traded, quantity]}, so fills add up across slices.
    legs = TextField(default="{}")
    security_id = CharField(default="")
    product_type = CharField(default="")
    transaction_type = CharField(default="")
    state = CharField()
    quantity = IntegerField(default=0)  # this mirror's own order quantity, in units
    # Units filled by earlier attempts of the same leg (a replaced order): the follower's
    # total for the leader order is carried_quantity + quantity.
    carried_quantity = IntegerField(default=0)
    filled_quantity = IntegerField(default=0)
    price = FloatField(default=0.0)
    trigger_price = FloatField(default=0.0)
    order_type = CharField(default="")
    disclosed_quantity = IntegerField(default=0)
    sliced = BooleanField(default=False)
    # Net positions when the mirror was first decided: a later resize keeps the proportion.
    leader_position_before = IntegerField(default=0)
    follower_position_before = IntegerField(default=0)
    modifications = IntegerField(default=0)
    reason = TextField(default="")
    reason_code = CharField(default="")  # core.reasons.ReasonCode: what follow acts on
    shadow = BooleanField(default=False)
    created_at = DateTimeField()
    updated_at = DateTimeField()
    submitted_at = DateTimeField(null=True)
    lag_ms = FloatField(null=True)  # leader seen -> follower request sent
    fill_lag_ms = FloatField(null=True)  # leader fully traded -> follower fully traded
    # The follower's average fill price over this attempt's orders, weighted by their fills
    # (0.0: nothing filled at a known price), from each order's price in `average_prices`:
    # JSON {follower order id: its average fill price}, beside `legs` (whose shape stays).
    average_price = FloatField(default=0.0)
    average_prices = TextField(default="{}")
    # When the follower's broker first showed the order accepted (ACCEPTED, PARTIALLY_FILLED
    # or FILLED), our clock, UTC: `mappings` and `stats` measure the lag to it.
    acked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("leader_order", "follower", "leg", "attempt"), True),)


class LeaderLeg(BaseModel):
    """An exit leg (2 stop-loss, 3 target) of a leader BO/CO: Dhan makes them when the
    entry fills, under the entry's order id. What they first said is kept, so a change the
    leader made to one (moving the stop) is told from the leg as Dhan set it."""

    order_id = CharField()
    leg = IntegerField()
    status = CharField()
    order_type = CharField()
    quantity = IntegerField()
    traded_quantity = IntegerField(default=0)
    price = FloatField(default=0.0)
    trigger_price = FloatField(default=0.0)
    first_price = FloatField(default=0.0)
    first_trigger_price = FloatField(default=0.0)
    updated_at = DateTimeField()

    class Meta:
        primary_key = CompositeKey("order_id", "leg")


class Intent(BaseModel):
    """A state-changing call, committed before it is sent and completed after."""

    id = AutoField()
    mirror = ForeignKeyField(MirrorOrder, backref="intents", on_delete="CASCADE")
    action = CharField()  # PLACE / MODIFY / CANCEL
    status = CharField(index=True)  # SENDING / DONE / REFUSED / THROTTLED / UNKNOWN / ...
    request = TextField(default="{}")  # JSON of what was sent; never credentials
    outcome = TextField(default="")
    created_at = DateTimeField()
    completed_at = DateTimeField(null=True)


class StateEvent(BaseModel):
    id = AutoField()
    mirror = ForeignKeyField(MirrorOrder, backref="events", on_delete="CASCADE")
    from_state = CharField()
    to_state = CharField()
    trigger = CharField()
    at = DateTimeField()
    detail = TextField(default="")


class AuditEvent(BaseModel):
    id = AutoField()
    at = DateTimeField(index=True)
    kind = CharField(index=True)
    leader_order_id = CharField(null=True, index=True)
    follower = CharField(null=True)
    message = TextField()
    data = TextField(default="{}")


class Instrument(BaseModel):
    """The leader's instruments from Dhan's scrip master, cached for the day."""

    security_id = CharField()
    exchange_segment = CharField()
    symbol = CharField(default="")
    lot_size = IntegerField()
    tick_size = FloatField(default=0.05)

    class Meta:
        primary_key = CompositeKey("exchange_segment", "security_id")


class Setting(BaseModel):
    """Small key/value state: the cached scrip master's date, schema notes."""

    key = CharField(primary_key=True)
    value = TextField()


class Trail(BaseModel):
    """The append-only, hash-chained audit trail, read by `audit` and `explain`. Created
    (with AUTOINCREMENT, its triggers and guards) by the migration in store/trail.py, never
    by create_tables, so it is not in ALL_MODELS; only its triggers write it."""

    id = AutoField()
    at = TextField()  # as the source row stored it (UTC)
    kind = TextField()
    leader_order_id = TextField(null=True)
    follower = TextField(null=True)
    mirror_id = IntegerField(null=True)
    message = TextField()
    data = TextField()  # JSON object
    prev_hash = TextField()
    hash = TextField()


ALL_MODELS = (LeaderOrder, MirrorOrder, Intent, StateEvent, AuditEvent, Instrument, Setting,
              LeaderLeg)
