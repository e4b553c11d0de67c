"""Dhan's token endpoints: `GET /v2/profile` (how long the token is valid, whether the
account has a Data API plan) and `GET /v2/RenewToken` (a new token, valid another 24 hours).

The SDK has neither, so this is a small client of its own on `requests` (the account's
egress: proxy or source address, like its other calls). Every answer is an `Outcome` as
`dhan.rest.classify` makes it: DH-901 is AUTH, anything unreadable UNKNOWN; messages are
redacted, and a token goes only into a `Secret` (registered for redaction at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytz
import requests
from requests.adapters import HTTPAdapter

from copytrade.dhan.rest import Outcome, OutcomeKind, _SourceAddressAdapter, classify
from copytrade.dhan.sender import _sdk_reply
from copytrade.redact import redact
from copytrade.secret import Secret

IST = pytz.timezone("Asia/Kolkata")
# Dhan answers tokenValidity as IST `DD/MM/YYYY HH:MM` (dhan-api.md); seconds and an ISO
# form are accepted too, so a small change of format does not stop renewal.
_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?")
TOKEN_KEYS = ("accessToken", "token", "access_token")  # Dhan's docs disagree on the name


@dataclass(frozen=True)
class Validity:
    valid_until: datetime  # UTC
    data_plan: str = ""


@dataclass(frozen=True)
class Renewal:
    token: Secret = field(repr=False)
    valid_until: datetime | None = None  # UTC; None when the answer did not say


def parse_validity(text: object) -> datetime | None:
    """An IST time as Dhan writes it (`DD/MM/YYYY HH:MM`, or ISO), in UTC; None if not
    one. A naive time is IST: Dhan's clock."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    try:
        if found := _DMY.fullmatch(text):
            day, month, year, hour, minute, second = found.groups()
        elif found := _ISO.match(text):
            year, month, day, hour, minute, second = found.groups()
        else:
            return None
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(second or 0))
    except ValueError:  # 31/02/2026 and the like
        return None
    return IST.localize(moment).astimezone(UTC)


def usable_token(value: object) -> str | None:
    """A token we could send in a header: printable ASCII without spaces, a sane length."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not 16 <= len(value) <= 4096 or not all("!" <= c <= "~" for c in value):
        return None
    return value


class TokenApi:
    """Profile and RenewToken for one account and one token."""

    def __init__(self, client_id: str, token: Secret, *, api_url: str, timeout: float,
                 proxy: str | None = None, source_address: str | None = None) -> None:
        self.client_id = client_id
        self._token = token
        self._base = api_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # a stray HTTPS_PROXY must not reroute the account
        adapter = (_SourceAddressAdapter(source_address) if source_address
                   else HTTPAdapter())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if proxy:
            self._session.proxies = {"http": proxy, "https": proxy}

    def __repr__(self) -> str:  # never the token
        return f"TokenApi({self.client_id})"

    def close(self) -> None:
        self._session.close()

    def profile(self) -> Outcome:
        """SUCCESS with a Validity, or why not (AUTH: the token is refused)."""
        outcome = self._get("/profile")
        if not outcome.ok:
            return outcome
        data = outcome.data if isinstance(outcome.data, dict) else {}
        until = parse_validity(data.get("tokenValidity"))
        if until is None:
            return Outcome(OutcomeKind.UNKNOWN, message="profile: unreadable tokenValidity")
        return Outcome(OutcomeKind.SUCCESS, Validity(until, str(data.get("dataPlan") or "")))

    def renew(self) -> Outcome:
        """SUCCESS with a Renewal (the new token, as a Secret), or why not."""
        outcome = self._get("/RenewToken")
        if not outcome.ok:
            return outcome
        data = outcome.data if isinstance(outcome.data, dict) else {}
        nested = data.get("data")
        if isinstance(nested, dict):  # some gateways wrap the answer once more
            data = {**nested, **data}
        token = next((t for t in map(usable_token, map(data.get, TOKEN_KEYS)) if t), None)
        if token is None:
            return Outcome(OutcomeKind.UNKNOWN, message="RenewToken answered no usable token")
        secret = Secret(token)  # registered for redaction before anything else sees it
        until = parse_validity(data.get("expiryTime") or data.get("tokenValidity"))
        return Outcome(OutcomeKind.SUCCESS, Renewal(secret, until))

    def _get(self, endpoint: str) -> Outcome:
        headers = {"access-token": self._token.reveal(), "client-id": self.client_id,
                   "dhanClientId": self.client_id, "Accept": "application/json"}
        try:
            response = self._session.get(self._base + endpoint, headers=headers,
                                         timeout=self._timeout)
        except requests.RequestException as exc:
            # A library error may quote the request: redacted before it goes anywhere.
            return Outcome(OutcomeKind.UNKNOWN, message=redact(f"{type(exc).__name__}: "
                                                               f"{exc}")[:200])
        finally:
            del headers
        return classify(_reply(response))


def _reply(response: requests.Response) -> dict[str, Any]:
    return _sdk_reply(response.status_code, response.content)
