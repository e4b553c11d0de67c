"""The one redaction filter: every text that came from outside (broker messages, library
exception texts, tracebacks) passes through redact() before it is printed, logged or stored.

Every token becomes known here when it is wrapped in a Secret. For each token we keep the
forms a library may quote it in: raw, JSON-escaped, percent-encoded (quote / quote_plus,
upper- and lower-case hex), repr/ascii-quoted (str and bytes), base64 (standard and
url-safe, at each of the three byte alignments it can sit at inside a longer blob, keeping
only the characters that depend on the token alone) and its SHA-256 (hex, base64).

Substrings. A message truncated mid-token (or a wrapped line) holds only part of a form,
so any run of at least MIN_RUN characters that is a substring of a form is redacted too:
  - GRAMS holds every MIN_RUN-character substring of every form. A run of >= MIN_RUN is
    exactly a chain of overlapping windows that are all in GRAMS, so redacting the union
    of the matching windows removes every such run (over-redacting a little where two
    forms happen to meet is harmless).
  - The fast path must not hash every window of every message. PROBE holds every
    PROBE_LEN-character substring; the text is only sampled at positions 0, 8, 16, ...
    Any run of >= 16 characters fully contains one aligned 8-character block (8 + 8 - 1
    <= 16), so a text with no sampled block in PROBE holds no run: it is returned as the
    same object after len/8 set lookups. Windows are only checked around sampled hits.
  - Forms shorter than MIN_RUN (short tokens) are found whole by one regex.
Redaction repeats until nothing matches (each pass only shortens the text), so the marker
plus its neighbours can never rebuild a form.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

MARKER = "***"  # what Secret prints, so redacted text reads the same everywhere
MIN_SECRET_LEN = 8  # shorter values are not tokens, and redacting them would mangle text
MIN_RUN = 16  # any run this long that is part of a token's form is redacted
PROBE_LEN = MIN_RUN // 2  # sampled every PROBE_LEN chars: PROBE_LEN * 2 - 1 <= MIN_RUN


@dataclass(frozen=True)
class _State:
    probe: frozenset[str]
    grams: frozenset[str]
    short: re.Pattern[str] | None
    short_forms: frozenset[str]


_lock = threading.Lock()
_secrets: set[str] = set()
# Replaced whole on each registration; readers take one reference and never lock.
_state: _State | None = None


def register_secret(value: str) -> None:
    """Make `value` (and its quoted forms) redacted from now on, in every thread."""
    global _state
    if len(value) < MIN_SECRET_LEN or value in _secrets:
        return
    with _lock:
        if value in _secrets:
            return
        forms = _forms(value)
        long_forms = [f for f in forms if len(f) >= MIN_RUN]
        old = _state or _State(frozenset(), frozenset(), None, frozenset())
        short_forms = old.short_forms | {f for f in forms if len(f) < MIN_RUN}
        _state = _State(
            probe=old.probe | _windows(long_forms, PROBE_LEN),
            grams=old.grams | _windows(long_forms, MIN_RUN),
            short=_alternation(short_forms),
            short_forms=short_forms,
        )
        _secrets.add(value)


def has_secrets() -> bool:
    return _state is not None


def redact(text: str) -> str:
    """`text` with every known token form replaced by ***; the same object if none."""
    state = _state
    if state is None or not text:
        return text
    while True:
        spans = _spans(text, state)
        if not spans:
            return text
        text = _cut(text, spans)


def redact_value(value: object) -> object:
    """Redact every string in a JSON-like value (dicts, lists, tuples), keys included."""
    if _state is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):  # stored as JSON: a list either way
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's message (formatted with its args), traceback and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _state is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad args: log what we have rather than lose the record
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            # Formatter.format reuses exc_text when set, so the handler prints ours.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(handler: logging.Handler) -> logging.Handler:
    """Give `handler` the redacting filter (once)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


def install_everywhere() -> None:
    """The filter on every root handler and on logging's last-resort stderr handler, which
    prints library records while no handler is configured yet."""
    for handler in logging.getLogger().handlers:
        install(handler)
    if logging.lastResort is not None:
        install(logging.lastResort)


def _clear_for_tests() -> None:
    global _state
    with _lock:
        _secrets.clear()
        _state = None


# ---- internals -------------------------------------------------------------------------


def _forms(value: str) -> set[str]:
    # Imported on first registration only: the CLI's startup need not pay for them.
    import base64
    import hashlib
    import json
    from urllib.parse import quote, quote_plus

    raw = value.encode("utf-8", "surrogatepass")  # a lone surrogate must not crash us
    texts = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        ascii(value)[1:-1],
        repr(raw)[2:-1],
    }
    for encoded in (quote(raw, safe=""), quote(raw), quote_plus(raw), quote_plus(raw, safe="/")):
        texts.add(encoded)
        texts.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    for offset in range(3):
        start = -(-8 * offset // 6)  # first character made of token bits only
        end = 8 * (offset + len(raw)) // 6  # last one, exclusive
        padded = b"\0" * offset + raw
        for encoder in (base64.b64encode, base64.urlsafe_b64encode):
            texts.add(encoder(padded).decode()[start:end])
    digest = hashlib.sha256(raw).digest()
    texts.update({digest.hex(), base64.b64encode(digest).decode().rstrip("=")})
    return {t for t in texts if len(t) >= MIN_SECRET_LEN}


def _windows(forms: list[str], size: int) -> frozenset[str]:
    return frozenset(f[i:i + size] for f in forms for i in range(len(f) - size + 1))


def _alternation(forms: frozenset[str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def _spans(text: str, state: _State) -> list[tuple[int, int]]:
    spans: list[list[int]] = []  # merged as found: windows come in increasing order
    probe, grams, n = state.probe, state.grams, len(text)
    checked = -1
    for block in range(0, n - PROBE_LEN + 1, PROBE_LEN):
        if text[block:block + PROBE_LEN] not in probe:
            continue
        # every run window holding this block starts within PROBE_LEN before it
        for i in range(max(checked + 1, block - PROBE_LEN), min(block, n - MIN_RUN) + 1):
            if text[i:i + MIN_RUN] in grams:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + MIN_RUN
                else:
                    spans.append([i, i + MIN_RUN])
        checked = block
    found = [(s, e) for s, e in spans]
    if state.short is not None:
        found.extend(m.span() for m in state.short.finditer(text))
    return found


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    parts: list[str] = []
    kept = 0  # end of the text already copied or redacted
    start, end = -1, -1
    for s, e in sorted(spans):
        if s > end:  # a gap: the previous span is complete
            if end >= 0:
                parts += [text[kept:start], MARKER]
                kept = end
            start = s
        end = max(end, e)
    parts += [text[kept:start], MARKER, text[end:]]
    return "".join(parts)
