"""follow's live view, plain lines and stop summary (copytrade/cli/live_view.py), rendered
to fixed-width consoles without colour and compared as text: at 80 and 120 columns, with
one and three followers, and with hostile content (long reasons and symbols, markup and
escape sequences in a broker's text)."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType

from copytrade.cli import live_view as lv
from copytrade.core.report_math import FollowerStats, LatencySummary, MappingRow
from copytrade.engine.status_file import AccountState, FollowState
from copytrade.store.queries import LiveOrder, TrailEvent

NOW = datetime(2026, 1, 5, 4, 0, 0, tzinfo=UTC)  # 09:30:00 IST
SEEN = datetime(2026, 1, 5, 3, 45, 1, tzinfo=UTC)  # 09:15:01 IST
ONE = ["family-1"]
THREE = ["family-1", "family-2", "family-3"]
STOPPED = "the token of follower family-3 was refused (DH-901)"


def text_of(renderable: RenderableType, width: int) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def block(text: str) -> str:
    return text.strip("\n")


# ---- what the view is made of ------------------------------------------------------------------


def leader_row(order_id: str = "5224010100001", symbol: str = "RELIANCE", *,
               quantity: int = 20, traded: int = 20, average: float = 1397.5) -> MappingRow:
    return MappingRow("2026-01-05", order_id, 1, symbol, "BUY", "CNC", "LIMIT", "TRADED",
                      quantity, traded, average, SEEN)


def mirror(base: MappingRow, follower: str, state: str, quantity: int, filled: int, *,
           average: float = 0.0, reason: str = "", ack_ms: float | None = None) -> MappingRow:
    acked = SEEN + timedelta(milliseconds=ack_ms) if ack_ms is not None else None
    return replace(base, follower=follower, state=state, quantity=quantity, filled=filled,
                   follower_average=average, reason=reason, seen_at=SEEN, acked_at=acked)


def live_order(base: MappingRow, mirrors: list[MappingRow], *, price: float = 1398.0,
               order_type: str = "LIMIT") -> LiveOrder:
    return LiveOrder(base.leader_order_id, base.leg, base.symbol, base.side,
                     base.leader_quantity, base.leader_filled, order_type, price,
                     base.leader_average, base.leader_status, base.leader_seen_at,
                     mirrors={m.follower: m for m in mirrors if m.follower})


def orders_for(followers: list[str], *, skip_reason: str = "0.5 lots after multiplier 0.5: "
               "below one lot", symbol: str = "NIFTY26JANFUT") -> list[LiveOrder]:
    """Newest first: a market order (filled, skipped, rejected), a cancelled limit order
    and a limit order filled, partly filled and open."""
    reliance = leader_row()
    tcs = leader_row("5224010100002", "TCS", quantity=8, traded=0, average=0.0)
    nifty = leader_row("5224010100003", symbol, quantity=65, traded=65, average=25910.0)
    states = [("FILLED", 20, 20, 1397.55, 31.0), ("PARTIALLY_FILLED", 10, 5, 1397.5, 8.4),
              ("ACCEPTED", 40, 0, 0.0, 12000.0)]
    first = [mirror(reliance, name, state, qty, filled, average=avg, ack_ms=ack)
             for name, (state, qty, filled, avg, ack) in zip(followers, states, strict=False)]
    second = [mirror(tcs, name, "CANCELED", 4 * (i + 1), 0, reason="leader order cancelled",
                     ack_ms=20.0) for i, name in enumerate(followers)]
    third = [mirror(nifty, followers[0], "FILLED", 65, 65, average=25912.5, ack_ms=15.0)]
    if len(followers) > 1:
        third.append(mirror(nifty, followers[1], "SKIPPED", 0, 0, reason=skip_reason))
        third.append(mirror(nifty, followers[2], "REJECTED", 130, 0,
                            reason="DH-906: [red]margin[/red] shortfall"))
    return [live_order(nifty, third, price=0.0, order_type="MARKET"),
            live_order(tcs, second, price=3160.0), live_order(reliance, first)]


def state_for(followers: list[str], *, degraded: dict[str, str] | None = None) -> FollowState:
    """The leader connected; the second follower reconnecting with its token expiring;
    the third stopped on a refused token."""
    accounts = [AccountState("leader", "leader", "1100000001", "connected",
                             token_valid_until=NOW + timedelta(hours=20))]
    for index, name in enumerate(followers):
        accounts.append(AccountState(
            "follower", name, f"11000000{index + 2:02d}",
            "backoff" if index == 1 else "connected", "closed 1006" if index == 1 else "",
            STOPPED if index == 2 else "",
            token_valid_until=NOW + timedelta(minutes=20 if index == 1 else 600),
            token_refused=index == 2))
    return FollowState(1, NOW - timedelta(minutes=15), NOW, True, tuple(accounts),
                       degraded or {}, {"frames": 42, "intents": 9, "skipped": 1,
                                        "catch_ups": 1, "stalls": 0})


def view(followers: list[str], width: int, orders: list[LiveOrder] | None = None,
         **options: object) -> str:
    return text_of(lv.live_view(state_for(followers), orders_for(followers)
                                if orders is None else orders, followers,
                                title="copytrade follow", now=NOW, width=width,
                                **options), width)  # type: ignore[arg-type]


def headers(text: str) -> list[str]:
    """The heading line of each table: the line above its rule."""
    lines = text.splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if line.startswith("───")]


# ---- the live view at 80 and 120 columns -------------------------------------------------------


THREE_AT_80 = block("""
copytrade follow  09:30:00 IST  Ctrl-C stops  frames 42  intents 9  skipped 1
account   stream     token                           note
────────────────────────────────────────────────────────────────────────────────
leader    connected  valid until 05:30 IST tomorrow
family-1  connected  valid until 19:30 IST
family-2  backoff    expiring 09:50 IST              closed 1006
family-3  connected  refused                         STOPPED: the token of foll…
symbol         side    qty  family-1       family-2       family-3
────────────────────────────────────────────────────────────────────────
NIFTY26JANFUT  BUY   65/65  filled 65/65   skipped        rejected
TCS            BUY     0/8  cancelled 0/4  cancelled 0/8  cancelled 0/12
RELIANCE       BUY   20/20  filled 20/20   part 5/10      open 0/40
family-2 skipped NIFTY26JA…: 0.5 lots after m… (copytrade explain 5224010100003)
family-3 rejected NIFTY26JA…: DH-906: [red]ma… (copytrade explain 5224010100003)
""")

ONE_AT_120 = block("""
copytrade follow  09:30:00 IST  Ctrl-C stops  frames 42  intents 9  skipped 1  catch-ups 1
account   stream     token
───────────────────────────────────────────────────
leader    connected  valid until 05:30 IST tomorrow
family-1  connected  valid until 19:30 IST
time IST  symbol         side    qty     price  family-1            avg   slip   lag  order
───────────────────────────────────────────────────────────────────────────────────────────────────
09:15:01  NIFTY26JANFUT  BUY   65/65  25910.00  filled 65/65   25912.50  +2.50  15ms  5224010100003
09:15:01  TCS            BUY     0/8   3160.00  cancelled 0/4                   20ms  5224010100002
09:15:01  RELIANCE       BUY   20/20   1397.50  filled 20/20    1397.55  +0.05  31ms  5224010100001
""")


def test_three_followers_at_80_columns_drop_columns_instead_of_crushing_them() -> None:
    assert view(THREE, 80) == THREE_AT_80


def test_one_follower_at_120_columns_shows_fills_slippage_and_lag() -> None:
    assert view(ONE, 120) == ONE_AT_120


def test_three_followers_at_120_columns_keep_time_price_and_every_lag() -> None:
    text = view(THREE, 120)
    table = text.splitlines()[7:12]
    assert table[0].split() == ["time", "IST", "symbol", "side", "qty", "price", "family-1",
                                "lag", "family-2", "lag", "family-3", "lag"]
    assert table[4].split() == ["09:15:01", "RELIANCE", "BUY", "20/20", "1397.50", "filled",
                                "20/20", "31ms", "part", "5/10", "8.4ms", "open", "0/40", "12s"]
    # the reason lines have room for the whole reason, and the pointer to it
    assert ("family-3 rejected NIFTY26JANFUT: DH-906: [red]margin[/red] shortfall "
            "(copytrade explain 5224010100003)") in text.splitlines()


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("followers", [ONE, THREE], ids=["one", "three"])
def test_no_line_is_wider_than_the_console_and_no_heading_is_cut(
        followers: list[str], width: int) -> None:
    text = view(followers, width)
    assert all(len(line) <= width for line in text.splitlines())
    for heading in headers(text):
        assert "…" not in heading
        assert not re.search(r"\b\w…", heading)  # no `s…`, `q…`
    order_heading = headers(text)[1].split()
    for name in followers:  # every follower has its column, at any width
        assert name in order_heading
    assert {"symbol", "side", "qty"} <= set(order_heading)


def test_a_kind_of_follower_column_is_shown_for_every_follower_or_for_none() -> None:
    base = leader_row()
    filled = [live_order(base, [mirror(base, name, "FILLED", 20, 20, average=1397.5 + n,
                                       ack_ms=10.0 ** n) for n, name in enumerate(THREE)])]
    for width in range(70, 200, 7):
        heading = headers(view(THREE, width, filled))[1].split()
        for kind in lv.SECONDARY_KINDS:
            assert heading.count(kind) in (0, 3), (width, heading)


def test_a_kind_a_follower_has_nothing_for_does_not_hide_it_for_the_others() -> None:
    # Only family-1 has an average: family-2's and family-3's avg columns are empty and
    # left out, which must not take family-1's away.
    base = leader_row()
    orders = [live_order(base, [mirror(base, "family-1", "FILLED", 20, 20, average=1397.55),
                                mirror(base, "family-2", "SKIPPED", 0, 0, reason="x"),
                                mirror(base, "family-3", "SKIPPED", 0, 0, reason="y")])]
    assert "avg" in headers(view(THREE, 200, orders))[1].split()


def test_a_long_follower_name_is_a_numbered_column_and_the_accounts_say_which() -> None:
    long_name = "grandmother-savings-account"
    followers = ["family-1", long_name, "family-3"]
    text = view(followers, 80)
    assert headers(text)[1].split()[-3:] == ["family-1", "#2", "family-3"]
    assert f"#2 {long_name}" in text


def test_the_view_fits_the_height_it_is_given() -> None:
    tall = view(THREE, 120)
    short = view(THREE, 120, height=12)
    assert len(short.splitlines()) <= 12 < len(tall.splitlines())
    assert "RELIANCE" in tall and "RELIANCE" not in short  # the oldest order goes first
    assert "NIFTY26JANFUT" in short
    assert "NIFTY26JANFUT" in view(THREE, 120, height=3)  # at least one order, always


def test_no_order_yet() -> None:
    text = view(ONE, 80, orders=[])
    assert text.splitlines()[-1] == "no leader order yet"


# ---- hostile content ---------------------------------------------------------------------------


def test_a_very_long_reason_is_one_line_ending_in_the_explain_pointer() -> None:
    reason = "the broker says " + "very " * 200 + "long\nsecond line\x1b[31m red"
    text = view(THREE, 80, orders_for(THREE, skip_reason=reason))
    [line] = [line for line in text.splitlines() if line.startswith("family-2 skipped")]
    assert line.endswith("… (copytrade explain 5224010100003)")
    assert len(line) <= 80
    assert "\x1b" not in text and "second line" not in text


@pytest.mark.parametrize("width", [80, 120])
def test_a_60_character_symbol_is_cut_in_its_cell_not_in_the_headings(width: int) -> None:
    symbol = "NIFTY" + "X" * 50 + "26JAN"
    assert len(symbol) == 60
    text = view(THREE, width, orders_for(THREE, symbol=symbol))
    assert all(len(line) <= width for line in text.splitlines())
    assert symbol not in text
    assert "NIFTYXXXXXXXXXXXXXX…" in text  # a 20-wide cell
    assert "…" not in headers(text)[1]


def test_markup_in_a_broker_reason_is_shown_as_written() -> None:
    console = Console(width=200, color_system="truecolor", record=True, file=io.StringIO())
    console.print(lv.live_view(state_for(THREE), orders_for(THREE), THREE,
                               title="copytrade follow", now=NOW, width=200))
    assert "DH-906: [red]margin[/red] shortfall" in console.export_text()


def test_the_leader_stream_tells_its_silence_even_while_connected() -> None:
    state = state_for(ONE)
    leader = replace(state.accounts[0], stream_detail="no frame and no pong for 2 s")
    state = replace(state, accounts=(leader, *state.accounts[1:]))
    text = text_of(lv.live_view(state, [], ONE, title="copytrade follow", now=NOW,
                                width=120), 120)
    assert re.search(r"\nleader +connected +valid until 05:30 IST tomorrow +no frame and no "
                     r"pong for 2 s\n", text), text


def test_a_stopped_account_and_a_degraded_loop_show_in_the_header() -> None:
    state = state_for(THREE, degraded={"leader check": "OSError: No space left on device"})
    text = text_of(lv.live_view(state, [], THREE, title="copytrade follow", now=NOW,
                                width=120), 120)
    assert re.search(rf"\nfamily-3  connected  refused +STOPPED: {re.escape(STOPPED)}\n", text)
    assert ("degraded: leader check keeps failing (OSError: No space left on device); see "
            "the log") in text


# ---- cells -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "quantity", "filled", "cell"), [
    ("FILLED", 20, 20, "filled 20/20"), ("PARTIALLY_FILLED", 20, 5, "part 5/20"),
    ("ACCEPTED", 20, 0, "open 0/20"), ("SUBMITTED", 20, 0, "sent 0/20"),
    ("PENDING_CANCEL", 20, 0, "cancel 0/20"), ("CANCELED", 20, 3, "cancelled 3/20"),
    ("SKIPPED", 0, 0, "skipped"), ("REJECTED", 20, 0, "rejected"),
    ("EXPIRED", 20, 0, "expired"), ("EXPIRED", 20, 4, "expired 4/20"),
])
def test_state_cells_are_compact(state: str, quantity: int, filled: int, cell: str) -> None:
    assert lv.state_cell(mirror(leader_row(), "f1", state, quantity, filled)) == cell


def test_a_follower_without_a_mirror_is_a_dash() -> None:
    assert lv.state_cell(None) == "-"


@pytest.mark.parametrize(("ms", "text"), [(None, ""), (0.4, "0.4ms"), (12.3, "12ms"),
                                          (9999, "9999ms"), (12000, "12s"), (-3.5, "-3.5ms")])
def test_lag_text(ms: float | None, text: str) -> None:
    assert lv.lag_text(ms) == text


@pytest.mark.parametrize(("account", "text"), [
    (AccountState("leader", "leader", "1", "connected",
                  token_valid_until=NOW + timedelta(hours=5)), "valid until 14:30 IST"),
    (AccountState("leader", "leader", "1", "connected",
                  token_valid_until=NOW + timedelta(hours=20)),
     "valid until 05:30 IST tomorrow"),
    (AccountState("leader", "leader", "1", "connected",
                  token_valid_until=NOW + timedelta(days=3)), "valid until 08/01 09:30 IST"),
    (AccountState("follower", "f1", "2", "connected",
                  token_valid_until=NOW + timedelta(minutes=30)), "expiring 10:00 IST"),
    (AccountState("follower", "f1", "2", "connected",
                  token_valid_until=NOW + timedelta(hours=2), token_warning="renewal failed"),
     "expiring 11:30 IST"),
    (AccountState("follower", "f1", "2", "connected", token_refused=True,
                  token_valid_until=NOW + timedelta(hours=2)), "refused"),
    (AccountState("follower", "f1", "2", "connected"), "not read yet"),
])
def test_token_states(account: AccountState, text: str) -> None:
    assert lv.token_text(account, NOW) == text


def test_fit_line_keeps_the_tail_whole() -> None:
    assert lv.fit_line("a: ", "x" * 50, " (tail)", 20) == "a: xxxxxxxxx… (tail)"
    assert lv.fit_line("a: ", "short", " (tail)", 20) == "a: short (tail)"


# ---- plain lines, one per event ----------------------------------------------------------------


def event(kind: str, data: dict | None = None, *, follower: str | None = "family-2",
          order: str | None = "5224010100002", message: str = "", **fields: object) -> TrailEvent:
    values: dict = {"symbol": "TCS", "side": "BUY", "quantity": 4}
    values.update(fields)
    return TrailEvent(7, SEEN, kind, order, follower, message, data or {}, **values)


def line(item: TrailEvent) -> str | None:
    return lv.event_line(item, lv.who_width(THREE))


PLACE = {"order_type": "LIMIT", "price": 3150.0, "quantity": 2, "trigger_price": 0.0}
MODIFY = {"order_type": "LIMIT", "price": 3160.0, "quantity": 4, "trigger_price": 0.0}
LEADER = {"status": "PENDING", "quantity": 5, "traded_quantity": 0, "price": 3150.0,
          "trigger_price": 0.0, "order_type": "LIMIT", "average_price": 0.0, "reason": "",
          "first": False}
HEAD = "09:15:01 IST  family-2  5224010100002     TCS BUY 4  "
LEADER_HEAD = "09:15:01 IST  leader    5224010100002     TCS BUY {}  "


@pytest.mark.parametrize(("item", "text"), [
    (event("transition", {"from": "PLANNED", "to": "SUBMITTED", "detail": "4 units"}),
     "placed"),
    (event("transition", {"from": "PLANNED", "to": "SUBMITTED",
                          "detail": "adopted: already at the broker"}),
     "placed (adopted: already at the broker)"),
    (event("transition", {"from": "SUBMITTED", "to": "ACCEPTED"},
           follower_order_id="2224010100009"), "accepted (order 2224010100009)"),
    (event("transition", {"from": "ACCEPTED", "to": "PARTIALLY_FILLED"}, filled=2,
           average_price=3149.5), "partly filled 2/4 @ 3149.50"),
    (event("transition", {"from": "PARTIALLY_FILLED", "to": "FILLED"}, filled=4,
           average_price=3149.75), "filled 4/4 @ 3149.75"),
    (event("transition", {"from": "ACCEPTED", "to": "PENDING_CANCEL",
                          "detail": "leader order cancelled"}),
     "cancelling (leader order cancelled)"),
    (event("transition", {"from": "PENDING_CANCEL", "to": "CANCELED", "detail": ""},
           reason="leader order cancelled"), "cancelled (leader order cancelled)"),
    (event("transition", {"from": "PENDING_CANCEL", "to": "ACCEPTED",
                          "detail": "order already traded"}),
     "cancel refused: still open (order already traded)"),
    (event("transition", {"from": "SUBMITTED", "to": "REJECTED",
                          "detail": "DH-906: margin shortfall"}),
     "rejected (DH-906: margin shortfall)"),
    (event("transition", {"from": "PLANNED", "to": "SKIPPED",
                          "detail": "0.5 lots after multiplier 0.5: below one lot"},
           quantity=0), "skipped (0.5 lots after multiplier 0.5: below one lot)"),
    (event("transition", {"from": "ACCEPTED", "to": "EXPIRED", "detail": "end of day"}),
     "expired (end of day)"),
    (event("intent_done", {"action": "MODIFY", "status": "DONE", "outcome": "success"},
           before=PLACE, request=MODIFY), "modified: price 3150.00 -> 3160.00, qty 2 -> 4"),
    (event("intent_done", {"action": "MODIFY", "status": "DONE"}, before=None,
           request=MODIFY), "modified: price 3160.00, qty 4, type LIMIT"),
    (event("intent_done", {"action": "MODIFY", "status": "DONE"}, before=MODIFY,
           request=MODIFY), "modified: price 3160.00, qty 4, type LIMIT (as before)"),
    (event("intent_done", {"action": "MODIFY", "status": "REFUSED",
                           "outcome": "DH-905: order is traded"}),
     "modify refused (DH-905: order is traded)"),
    (event("intent_done", {"action": "CANCEL", "status": "THROTTLED", "outcome": "DH-904"}),
     "cancel throttled (DH-904)"),
    (event("divergence", message="CANCELLED_OUTSIDE: follower order 9 was cancelled"),
     "divergence: CANCELLED_OUTSIDE: follower order 9 was cancelled"),
])
def test_a_line_per_follower_event(item: TrailEvent, text: str) -> None:
    expected_head = HEAD.replace("BUY 4", "BUY 0") if item.quantity == 0 else HEAD
    assert line(item) == expected_head + text


@pytest.mark.parametrize(("data", "before", "quantity", "text"), [
    ({**LEADER, "status": "TRANSIT", "first": True}, None, 5,
     "seen: LIMIT @ 3150.00, transit"),
    ({**LEADER, "order_type": "MARKET", "price": 0.0, "first": True}, None, 5,
     "seen: MARKET, pending"),
    ({**LEADER, "order_type": "STOP_LOSS_MARKET", "price": 0.0, "trigger_price": 3100.0,
      "first": True}, None, 5, "seen: STOP_LOSS_MARKET trigger 3100.00, pending"),
    (LEADER, {**LEADER, "status": "TRANSIT"}, 5, "open"),
    ({**LEADER, "quantity": 8, "price": 3160.0}, LEADER, 8,
     "modified: price 3150.00 -> 3160.00, qty 5 -> 8"),
    ({**LEADER, "status": "CANCELLED"}, LEADER, 5, "cancelled"),
    ({**LEADER, "status": "CANCELLED", "traded_quantity": 2}, {**LEADER, "traded_quantity": 2},
     5, "cancelled (2/5 filled)"),
    ({**LEADER, "status": "PART_TRADED", "traded_quantity": 2, "average_price": 3149.5},
     LEADER, 5, "partly filled 2/5 @ 3149.50"),
    ({**LEADER, "status": "TRADED", "traded_quantity": 5, "average_price": 3149.5},
     {**LEADER, "traded_quantity": 2}, 5, "filled 5 @ 3149.50"),
    ({**LEADER, "status": "REJECTED", "reason": "RMS: margin"}, {**LEADER, "status": "TRANSIT"},
     5, "rejected (RMS: margin)"),
])
def test_a_line_per_leader_event(data: dict, before: dict | None, quantity: int,
                                 text: str) -> None:
    item = event("leader_order", data, follower=None, before=before)
    assert line(item) == LEADER_HEAD.format(quantity) + text


def test_events_another_line_tells_print_nothing() -> None:
    quiet = [event("intent", {"action": "PLACE"}),
             event("intent_done", {"action": "PLACE", "status": "DONE", "outcome": "9"}),
             event("intent_done", {"action": "PLACE", "status": "REFUSED", "outcome": "no"}),
             event("intent_done", {"action": "CANCEL", "status": "DONE"}),
             event("skipped", message="below one lot"),
             event("mirror_rejected", message="DH-906"),
             event("modify_failed", message="DH-905"),
             event("leader_order", LEADER, follower=None, before=LEADER)]
    assert [line(item) for item in quiet] == [None] * len(quiet)


def test_an_event_without_an_order_has_dashes_for_it() -> None:
    item = event("stream_connected", follower=None, order=None,
                 message="leader stream connected (reconnects so far: 0)")
    assert line(item) == ("09:15:01 IST  -         -                 -  stream_connected: "
                          "leader stream connected (reconnects so far: 0)")
    token = event("token_expiring", follower="family-1", order=None,
                  message="token of follower family-1 expires at 05/01/2026 10:00 IST")
    assert line(token) == ("09:15:01 IST  family-1  -                 -  token_expiring: token "
                           "of follower family-1 expires at 05/01/2026 10:00 IST")


def test_plain_lines_are_in_ist_and_say_so_even_for_a_naive_time() -> None:
    naive = replace(event("resumed", message="intent 3", order=None),
                    at=SEEN.replace(tzinfo=None))
    assert line(naive).startswith("09:15:01 IST  family-2  ")  # type: ignore[union-attr]
    assert line(replace(naive, at=None)).startswith("--:--:-- IST  ")  # type: ignore


def test_a_plain_line_is_one_line_whatever_the_broker_wrote() -> None:
    reason = "[red]DH-906[/red]\nsecond line\x1b[2J " + "x" * 400
    item = event("transition", {"from": "SUBMITTED", "to": "REJECTED", "detail": reason})
    text = line(item)
    assert text is not None and "\n" not in text and "\x1b" not in text
    assert "rejected ([red]DH-906[/red] second line" in text  # markup is text
    assert text.endswith("… (copytrade explain 5224010100002))")


def test_a_plain_line_never_shows_a_token() -> None:
    from copytrade.secret import Secret

    token = Secret("tok-LIVE-VIEW-5f3c9a77e1")  # known to the redaction filter from here
    item = event("intent_done", {"action": "CANCEL", "status": "UNKNOWN",
                                 "outcome": f"timeout with {token.reveal()}"})
    text = line(item)
    assert text is not None and token.reveal() not in text


# ---- the stop summary --------------------------------------------------------------------------


def summary(followers: list[str]) -> lv.RunSummary:
    rows = [m for o in orders_for(followers) for m in o.mirrors.values()]
    lags = [0.4, None, None, 0.5, 0.7, 2.0, 0.3, 0.6, 1.2]  # none for skipped, rejected
    rows = [replace(r, send_lag_ms=lag) for r, lag in zip(rows, lags, strict=True)]
    return lv.run_summary("copytrade follow", NOW - timedelta(minutes=15), NOW,
                          [*followers, "family-9"], rows)


def test_the_summary_counts_each_follower_of_this_run() -> None:
    result = summary(THREE)
    assert [(s.follower, s.orders, s.mirrored, s.filled, sum(s.skipped.values()),
             sum(s.rejected.values())) for s in result.stats] == [
        ("family-1", 3, 3, 2, 0, 0), ("family-2", 3, 2, 0, 1, 0), ("family-3", 3, 2, 0, 0, 1),
        ("family-9", 0, 0, 0, 0, 0)]  # configured, nothing this run
    assert result.stats[0].latency.p50 == 20.0 and result.stats[0].latency.p99 == 31.0
    assert (result.sending.count, result.sending.p50, result.sending.p99) == (7, 0.6, 2.0)


def test_the_summary_as_plain_text() -> None:
    assert lv.summary_plain(summary(THREE)) == block("""
copytrade follow stopped: this run, 09:15:00 IST to 09:30:00 IST
follower  seen  mirrored  filled  skipped  rejected  lag p50  lag p99
family-1  3     3         2       0        0         20ms     31ms
family-2  3     2         0       1        0         8.4ms    20ms
family-3  3     2         0       0        1         20ms     12s
family-9  0     0         0       0        0
family-2 skipped 1: # lots after multiplier #: below one lot
family-3 rejected 1: DH-#: [red]margin[/red] shortfall
seen: leader orders decided for the follower; lag: leader event -> its broker accepted the order (as in `copytrade stats`); copytrade's own part, leader event -> request sent: p50 0.6ms, p99 2.0ms
""")  # noqa: E501


@pytest.mark.parametrize("width", [80, 120])
def test_the_summary_table_fits_without_cutting_a_heading(width: int) -> None:
    text = text_of(lv.summary_view(summary(THREE), width), width)
    assert headers(text)[0].split() == ["follower", "seen", "mirrored", "filled", "skipped",
                                        "rejected", "lag", "p50", "lag", "p99"]
    assert all(len(row) <= width for row in text.splitlines())
    assert "family-3 rejected 1: DH-#: [red]margin[/red] shortfall" in text


def test_an_empty_run_sums_up_to_zeros_without_lags() -> None:
    result = lv.run_summary("copytrade demo", NOW, NOW, ONE, [])
    assert result.stats == (FollowerStats("family-1", 0, 0, 0),)
    assert result.sending == LatencySummary(0, None, None, None, None)
    assert lv.summary_plain(result).splitlines()[2].split() == ["family-1", "0", "0", "0", "0",
                                                                "0"]
    assert "request sent" not in lv.summary_note(result)
