"""The one redaction filter: every known token, in every form a library may quote it,
is gone from outside text before it is printed, logged or stored."""

from __future__ import annotations

import base64
import json
import logging
import re
import string
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade import redact as redaction
from copytrade.dhan.rest import OutcomeKind, classify
from copytrade.redact import MARKER, RedactingFilter, redact, register_secret
from copytrade.secret import Secret

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJkaGFuQ2xpZW50SWQiOiIxMDAwMDAwMDAxIn0.sIg-n_4t"
ODD = 'tok"en\\with/odd chars+é ok%'  # every escape differs from the raw text


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    """Each test starts and ends with no secret known (the registry is process-wide)."""
    redaction._clear_for_tests()
    yield
    redaction._clear_for_tests()


def forms(token: str) -> dict[str, str]:
    """The token as libraries put it in a message."""
    raw = token.encode()
    return {
        "raw": token,
        "json": json.dumps(token),
        "json ascii off": json.dumps(token, ensure_ascii=False),
        "url": quote(token, safe=""),
        "url lower hex": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(),
                                quote(token, safe="")),
        "url plus": quote_plus(token),
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode(),
        "base64 in a basic header": base64.b64encode(b"1000000001:" + raw).decode(),
        "repr": repr(token),
        "bytes repr": repr(raw),
    }


def pieces(token: str) -> list[str]:
    """Texts made of the token alone: no 16-character run of them may survive."""
    raw = token.encode()
    return [token, json.dumps(token)[1:-1], json.dumps(token, ensure_ascii=False)[1:-1],
            quote(token, safe=""), quote_plus(token), repr(token)[1:-1], repr(raw)[2:-1],
            base64.b64encode(raw).decode()[: len(raw) // 3 * 4]]


def assert_clean(text: str, token: str) -> None:
    for name, form in forms(token).items():
        assert form not in text, name
    for piece in pieces(token):  # e.g. a message cut mid-token
        for i in range(len(piece) - redaction.MIN_RUN + 1):
            assert piece[i:i + redaction.MIN_RUN] not in text, (piece, i)


@pytest.mark.parametrize("token", [TOKEN, ODD])
@pytest.mark.parametrize("form", list(forms(TOKEN)))
def test_every_form_is_redacted(token: str, form: str) -> None:
    register_secret(token)
    quoted = forms(token)[form]
    out = redact(f"DH-905 bad header access-token: {quoted} (request id 42)")
    assert out.startswith("DH-905 bad header access-token: ")
    assert out.endswith(" (request id 42)")
    assert MARKER in out
    assert_clean(out, token)


def test_a_token_cut_mid_way_is_redacted() -> None:
    register_secret(TOKEN)
    for cut in (16, 17, 40):
        assert redact("header: " + TOKEN[:cut]) == "header: ***"
        assert redact(TOKEN[-cut:] + " end") == "*** end"
        assert redact("x" + TOKEN[10:10 + cut] + "y") == "x***y"


def test_short_pieces_and_other_text_are_kept() -> None:
    register_secret(TOKEN)
    piece = TOKEN[:15]  # shorter than a run: could be anything
    assert redact(f"kept {piece}") == f"kept {piece}"
    text = "DH-906 order quantity 25 is not a multiple of the lot size 75"
    assert redact(text) is text


def test_a_short_token_is_redacted_whole() -> None:
    register_secret("abc123XYZ")
    assert redact("token abc123XYZ! and YWJjMTIzWFla") == "token ***! and ***"


def test_too_short_values_are_not_secrets() -> None:
    register_secret("abc")
    assert not redaction.has_secrets()
    assert redact("abc") == "abc"


def test_every_registered_token_is_redacted() -> None:
    register_secret(TOKEN)
    register_secret(ODD)
    out = redact(f"a={TOKEN} b={json.dumps(ODD)}")
    assert_clean(out, TOKEN)
    assert_clean(out, ODD)


def test_without_secrets_or_candidates_the_same_object_comes_back() -> None:
    text = "".join(["order ", "rejected: ", "margin"])  # a fresh object, not interned
    assert redact(text) is text
    register_secret(TOKEN)
    assert redact(text) is text
    long_text = "no token here at all, only ordinary broker words " * 50
    assert redact(long_text) is long_text


def test_a_secret_registers_itself() -> None:
    Secret(TOKEN)
    Secret("")  # an empty token: nothing to redact
    assert redact(f"token {TOKEN}") == "token ***"


def test_the_marker_cannot_rebuild_a_token() -> None:
    # A token holding the marker itself: redaction repeats until nothing is left.
    token = "ab***cd***ef***gh***ij"
    register_secret(token)
    out = redact("ab" + token + token[2:])
    assert token not in out
    assert_clean(out, token)


def test_nested_values_are_redacted() -> None:
    register_secret(TOKEN)
    value = {"error": [f"bad {TOKEN}", {"deep": (TOKEN, 5)}], "n": 1}
    assert redaction.redact_value(value) == {"error": ["bad ***", {"deep": ["***", 5]}],
                                             "n": 1}


TOKEN_CHARS = string.ascii_letters + string.digits + "-_.+/=\"'\\%*é "


@settings(max_examples=200, deadline=None)
@given(token=st.text(TOKEN_CHARS, min_size=8, max_size=80),
       before=st.text(max_size=40), after=st.text(max_size=40),
       form=st.sampled_from(list(forms("x"))),
       cut=st.integers(min_value=0, max_value=20))
def test_no_form_of_any_token_survives(token: str, before: str, after: str, form: str,
                                       cut: int) -> None:
    redaction._clear_for_tests()
    register_secret(token)
    quoted = forms(token)[form]
    out = redact(before + quoted + after)
    assert_clean(out, token)
    # truncated mid-token, as a library cutting a long message would
    if len(quoted) - cut >= redaction.MIN_RUN:
        assert_clean(redact(before + quoted[: len(quoted) - cut]), token)


def test_the_logging_filter_redacts_a_real_log_file(tmp_path: Path) -> None:
    register_secret(TOKEN)
    path = tmp_path / "test.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    redaction.install(handler)
    redaction.install(handler)  # once is enough
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    logger = logging.getLogger("copytrade.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.error("reply: %s", {"remarks": f"header access-token: {TOKEN}"})
        logger.warning(f"f-string {base64.b64encode(TOKEN.encode()).decode()}")
        try:
            raise RuntimeError(f"connection failed, token={TOKEN!r}")
        except RuntimeError:
            logger.exception("call failed for %s", quote(TOKEN))
        logger.info("plain %d", 7)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        handler.close()
    text = path.read_text(encoding="utf-8")
    assert_clean(text, TOKEN)
    assert "RuntimeError: connection failed, token='***'" in text
    assert "Traceback" in text
    assert "INFO plain 7" in text


def test_classify_redacts_broker_messages() -> None:
    register_secret(TOKEN)
    refused = classify({"status": "failure", "remarks": {
        "error_code": "DH-905", "error_message": f"bad header access-token: {TOKEN}"}})
    assert refused.kind is OutcomeKind.REFUSED
    assert refused.message == "bad header access-token: ***"
    # string remarks (a library exception text), cut at 200 characters by classify
    unknown = classify({"status": "failure",
                        "remarks": f"HTTPError {'x' * 150} headers={{'access-token': '{TOKEN}'}}"})
    assert unknown.kind is OutcomeKind.UNKNOWN
    assert_clean(unknown.message, TOKEN)


def test_the_store_keeps_texts_redacted(tmp_path: Path) -> None:
    from copytrade.store.db import open_store
    from copytrade.store.repo import Store

    register_secret(TOKEN)
    db = open_store(tmp_path / "copytrade.db")
    try:
        store = Store(db, now=lambda: datetime(2024, 1, 2, 10, 0))
        with store.write():
            store.audit("broker_error", f"DH-905 bad header access-token: {TOKEN}",
                        follower="f1", data={"reply": {"remarks": [TOKEN]}, "n": 3})
        message, data = db.execute_sql(
            "SELECT message, data FROM auditevent ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    assert message == "DH-905 bad header access-token: ***"
    assert json.loads(data) == {"reply": {"remarks": ["***"]}, "n": 3}
    assert TOKEN not in message + data
