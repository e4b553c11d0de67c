"""`Emulator`: the Dhan stand-in, REST and order stream on loopback, with its control plane.

Used as a context manager by tests, the demo and benchmarks, and by `copytrade sim`:

    with Emulator() as sim:
        api = dhanhq(DhanContext(...)); api.dhan_http.base_url = sim.rest_url
        sim.set_price("1333", 1652.0)

Every control call is a method here and, over HTTP, a route under `/_sim` on the
REST port (docs/sim.md).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from copytrade.sim.book import Book
from copytrade.sim.clock import Clock
from copytrade.sim.dialects import Dialect, as_dialect, dialect_named
from copytrade.sim.faults import FaultPlan, RestFault
from copytrade.sim.instruments import DEFAULT_INSTRUMENTS, Instrument
from copytrade.sim.rest import CONTROL_PREFIX, SCRIP_MASTER_PATH, RestServer
from copytrade.sim.stream import OrderStreamServer
from copytrade.sim.timing import TimingLog
from copytrade.sim.wire import encode

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
MAX_ALERTS = 200  # the webhook receiver keeps the last this many
MAX_ALERT_BYTES = 64 * 1024  # an alert is a line of text; 200 of these stay small


class Emulator:
    def __init__(self, *, host: str = "127.0.0.1", rest_port: int = 0, ws_port: int = 0,
                 funds: float = 1_000_000.0, clock: Clock | None = None,
                 seed: int | None = None, verbose: bool = False,
                 instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS,
                 order_rate_scale: float = 1.0, dialect: str | Dialect = "clean") -> None:
        self.book = Book(funds=funds, clock=clock, seed=seed, instruments=instruments,
                         order_rate_scale=order_rate_scale, dialect=as_dialect(dialect))
        self.faults = FaultPlan()
        self.stream = OrderStreamServer(self.book.stream_login_ok, host=host, port=ws_port)
        self.book.on_update = self.stream.publish
        self._host = host
        self._rest_port = rest_port
        self._verbose = verbose
        self.rest: RestServer | None = None
        self.timing: TimingLog | None = None
        # The webhook receiver (`/_sim/alerts`): the last MAX_ALERTS bodies, and who to tell.
        self._alerts: deque[Any] = deque(maxlen=MAX_ALERTS)
        self._alerts_lock = threading.Lock()
        self.on_alert: Callable[[Any], None] | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind both servers (OSError if a port is taken) and serve in background threads."""
        self.rest = RestServer(self.book, self.faults, control=self.handle_control,
                               host=self._host, port=self._rest_port, verbose=self._verbose)
        self.rest.timing = self.timing
        try:
            self.stream.start()
        except BaseException:
            self.rest.stop()
            raise
        self.rest.start()
        return self

    def stop(self) -> None:
        if self.rest is not None:
            self.rest.stop()
        self.stream.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        assert self.rest is not None, "start() the emulator first"
        return f"{self.rest.base_url}/v2"

    @property
    def ws_url(self) -> str:
        return self.stream.url

    @property
    def control_url(self) -> str:
        assert self.rest is not None, "start() the emulator first"
        return f"{self.rest.base_url}{CONTROL_PREFIX}"

    @property
    def scrip_master_url(self) -> str:
        assert self.rest is not None, "start() the emulator first"
        return f"{self.rest.base_url}{SCRIP_MASTER_PATH}"

    # ---- market ---------------------------------------------------------------------------

    def set_price(self, security_id: str, price: float) -> None:
        self.book.set_price(security_id, price)

    def step_prices(self, steps: int = 1) -> dict[str, float]:
        return self.book.step_prices(steps)

    def set_fill_size(self, quantity: int | None, security_id: str | None = None) -> None:
        self.book.set_fill_size(quantity, security_id)

    def match(self) -> None:
        self.book.match_all()

    def set_funds(self, client_id: str, funds: float) -> None:
        self.book.set_funds(client_id, funds)

    # ---- Dhan's app (orders with Source "N") ---------------------------------------------

    def app_place(self, client_id: str, order: dict) -> list[str]:
        if not isinstance(order, dict):
            raise ValueError("order must be a JSON object")
        account = self.book.account(client_id)
        return [o.order_id for o in self.book.place(account, dict(order), source="N",
                                                     slicing=bool(order.get("slicing")))]

    def app_modify(self, client_id: str, order_id: str, order: dict) -> str:
        if not isinstance(order, dict):
            raise ValueError("order must be a JSON object")
        account = self.book.account(client_id)
        return self.book.modify(account, order_id, dict(order), source="N").status

    def app_cancel(self, client_id: str, order_id: str) -> str:
        account = self.book.account(client_id)
        return self.book.cancel(account, order_id, source="N").status

    def reject(self, order_id: str, reason: str = "Rejected by the exchange") -> None:
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
            raise ValueError(f"reason must be a string of at most {MAX_REASON_LENGTH} "
                             "characters")
        self.book.reject(order_id, reason)

    # ---- dialects -------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        """The run's dialect (accounts without their own speak it)."""
        return self.book.dialect

    def dialect_of(self, client_id: str) -> Dialect:
        return self.book.dialect_of(client_id)

    def set_dialect(self, client_id: str, dialect: str | Dialect | None = None,
                    flags: dict[str, Any] | None = None) -> dict[str, Any]:
        """The account speaks a preset (`clean`, `realistic`; None: the run's) with some
        flags changed, e.g. `set_dialect(cid, "realistic", {"data_plan": True})`; returns
        the account's dialect."""
        base = (self.book.dialect if dialect is None
                else dialect if isinstance(dialect, Dialect) else dialect_named(dialect))
        chosen = base.with_flags(flags) if flags else base
        own = None if dialect is None and not flags else chosen
        return self.book.set_dialect(client_id, own).describe()

    def set_ip_whitelisted(self, client_id: str, whitelisted: bool = True) -> None:
        """False: every API order call (place, slice, modify, cancel) of the account is
        refused as coming from an IP that is not its whitelisted static IP."""
        if not isinstance(whitelisted, bool):
            raise ValueError("whitelisted must be true or false")
        self.book.set_ip_whitelisted(client_id, whitelisted)

    def set_bo_co_allowed(self, client_id: str, allowed: bool = True) -> None:
        """False: every BO/CO place of the account (API or app) is refused DH-906, as for an
        account without bracket and cover orders enabled."""
        if not isinstance(allowed, bool):
            raise ValueError("allowed must be true or false")
        self.book.set_bo_co_allowed(client_id, allowed)

    # ---- faults ---------------------------------------------------------------------------

    def fail_next(self, kind: str, path: str = "*", *, method: str | None = None,
                  count: int = 1, client_id: str | None = None, status: int = 500) -> None:
        """The next `count` matching REST requests answer 429 (429_empty: with no body), 5xx,
        time out, are accepted and then time out, (lookups) answer not-found, or (echo_token)
        answer 400 with the request's own access-token in the message, as some proxies and
        brokers do."""
        self.faults.add(RestFault(kind=kind, path=path, method=method, count=count,
                                  client_id=client_id, status=status))

    def set_delay(self, milliseconds: float) -> None:
        """A fixed delay on every REST reply (half before, half after the work)."""
        if not 0 <= milliseconds <= 60_000:
            raise ValueError("delay must be between 0 and 60000 ms")
        self.faults.delay_seconds = milliseconds / 1000

    def set_hold(self, seconds: float) -> None:
        """How long a timed-out request is held before its connection is closed."""
        if not 0 <= seconds <= 600:
            raise ValueError("hold must be between 0 and 600 seconds")
        self.faults.hold_seconds = seconds

    def drop_stream(self, client_id: str | None = None, clean: bool = True) -> int:
        return self.stream.drop(client_id, clean=clean)

    def stall_stream(self, client_id: str | None = None, seconds: float = 60.0) -> int:
        return self.stream.stall(client_id, seconds=seconds)

    def unstall_stream(self, client_id: str | None = None) -> int:
        return self.stream.unstall(client_id)

    def duplicate_frames(self, count: int, client_id: str | None = None) -> None:
        self.stream.duplicate_next(count, client_id)

    def delay_frames(self, count: int, seconds: float, client_id: str | None = None) -> None:
        self.stream.delay_next(count, seconds, client_id)

    def reorder_frames(self, count: int, client_id: str | None = None) -> None:
        self.stream.reorder_next(count, client_id)

    def send_raw_frame(self, client_id: str, text: str) -> int:
        """Send `text` verbatim (no JSON check: it is meant to be hostile) as a text frame to
        every logged-in stream connection of the account, behind the frames already queued;
        returns the number of connections it was queued on."""
        return self.stream.send_raw(client_id, text)

    def expire_token(self, client_id: str) -> int:
        """Every token of the account now gets DH-901 and its stream is closed."""
        expired = self.book.expire_tokens(client_id)
        self.stream.disconnect_account(client_id)
        return expired

    def end_session(self) -> int:
        return self.book.end_session()

    def start_session(self, new_day: bool = False) -> None:
        self.book.start_session(new_day=new_day)

    def clear_faults(self) -> None:
        self.faults.clear()
        self.stream.clear_faults()

    def snapshot(self) -> dict:
        state = self.book.snapshot()
        state["faults"] = {"rest": self.faults.pending(),
                           "delay_ms": self.faults.delay_seconds * 1000,
                           "hold_seconds": self.faults.hold_seconds}
        state["stream"] = self.stream.stats()
        return state

    # ---- a webhook receiver for alerts (paper trading: `[alerts] webhook_url`) ------------

    def receive_alert(self, body: Any) -> None:
        """Keep an alert (any JSON value; the last MAX_ALERTS are kept) and pass it to
        `on_alert`, which `copytrade sim` uses to print it."""
        size = len(encode(body))
        if size > MAX_ALERT_BYTES:
            raise ValueError(f"an alert must be at most {MAX_ALERT_BYTES} bytes of JSON, "
                             f"not {size}")
        with self._alerts_lock:
            self._alerts.append(body)
        listener = self.on_alert
        if listener is not None:
            try:
                listener(body)
            except Exception:  # the alert is kept; a failing listener must not refuse it
                log.exception("alert listener failed")

    def alerts(self) -> list[Any]:
        """The alerts received, oldest first (at most MAX_ALERTS)."""
        with self._alerts_lock:
            return list(self._alerts)

    # ---- benchmark timestamps (not a control route: bench/ runs its own emulator process) --

    def enable_timing(self, on: bool = True) -> None:
        """Record when each stream frame is sent, each stream login is accepted and each /v2
        request is read and answered (`time.perf_counter()`); off by default. See
        `copytrade.sim.timing`."""
        self.timing = TimingLog() if on else None
        self.stream.timing = self.timing
        if self.rest is not None:
            self.rest.timing = self.timing

    def take_timings(self) -> dict[str, list[list[Any]]]:
        """What was recorded since the last call (empty lists when timing is off)."""
        timing = self.timing
        if timing is None:
            return {"frames": [], "requests": [], "logins": []}
        return timing.take()

    # ---- control over HTTP --------------------------------------------------------------

    def handle_control(self, method: str, path: str, body: dict) -> Any:
        from copytrade.sim.control import dispatch

        return dispatch(self, method, path, body)
