"""The mirror-order state machine of core/orders.py, rendered as Markdown for
docs/architecture.md (pure: a string from the table, no I/O).

Rendered from the code, never written by hand: every row comes from `TRANSITIONS` and
what `transition()` answers, so the doc cannot drift from what follow does
(tests/unit/test_architecture_doc.py compares the two, and says how to regenerate).
"""

from __future__ import annotations

from collections.abc import Collection

from copytrade.core.orders import (
    OPEN_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    MirrorState,
    Trigger,
    cancel_rejected,
    transition,
)

_RECORDED = "yes"
_REPEAT = "no (a repeat)"


def _names(members: Collection[MirrorState] | Collection[Trigger]) -> str:
    """Enum members in their declaration order (not a set's), as code spans."""
    kind = MirrorState if all(isinstance(m, MirrorState) for m in members) else Trigger
    return ", ".join(f"`{m}`" for m in kind if m in members)


def _transition_rows() -> list[str]:
    rows = []
    for state in MirrorState:
        for trigger in Trigger:
            if (state, trigger) in TRANSITIONS:
                moved = transition(state, trigger)
                recorded = _RECORDED if moved.changed else _REPEAT
                rows.append(f"| `{state}` | `{trigger}` | `{moved.state}` | {recorded} |")
            elif state is MirrorState.PENDING_CANCEL and trigger is Trigger.CANCEL_REJECTED:
                # Not in the table: the target depends on history (orders.cancel_rejected).
                recorded = _RECORDED if cancel_rejected(MirrorState.ACCEPTED).changed else _REPEAT
                rows.append(f"| `{state}` | `{trigger}` | the state before the cancel request "
                            f"| {recorded} |")
    return rows


def ignored_reports() -> dict[MirrorState, list[Trigger]]:
    """Per state, the triggers `transition()` accepts without moving or recording anything
    (stale or repeated reports) although the table names no transition for them."""
    ignored: dict[MirrorState, list[Trigger]] = {}
    for state in MirrorState:
        for trigger in Trigger:
            if (state, trigger) in TRANSITIONS:
                continue
            try:
                moved = transition(state, trigger)
            except InvalidTransition:
                continue
            if not moved.changed and moved.state is state:
                ignored.setdefault(state, []).append(trigger)
    return ignored


def transition_table_markdown() -> str:
    """The state machine as docs/architecture.md shows it, ending in a newline."""
    lines = [
        "| from | trigger | to | state event written |",
        "|---|---|---|---|",
        *_transition_rows(),
        "",
        "Stale or repeated reports, accepted and ignored (the state stays, nothing is "
        "written):",
        "",
        "| state | ignored triggers |",
        "|---|---|",
        *(f"| `{state}` | {_names(triggers)} |"
          for state, triggers in ignored_reports().items()),
        "",
        f"Open states: {_names(OPEN_STATES)}. Terminal states: {_names(TERMINAL_STATES)}. "
        "Any other (state, trigger) pair raises `InvalidTransition`.",
    ]
    return "\n".join(lines) + "\n"
