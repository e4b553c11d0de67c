"""An access token that cannot leak through printing."""

from __future__ import annotations

import hmac

from copytrade.redact import register_secret


class Secret:
    """An access token that prints as *** everywhere: str, repr, f-strings, tracebacks,
    and is redacted (copytrade.redact) from any outside text that quotes it.

    Only .reveal() gives the value, so every use of it is deliberate and greppable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        # The single choke point: a token known as a Secret is redacted from every
        # outside text (broker messages, library errors) before it is shown or stored.
        if value:
            register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, so a comparison cannot be timed to guess a token.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
