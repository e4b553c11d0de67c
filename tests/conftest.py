"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge inputs, never the machine's speed: on a loaded CI host neither a
# per-example deadline nor "input generation is slow" may fail a test.
settings.register_profile(
    "copytrade", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("copytrade")


@pytest.fixture(autouse=True)
def copytrade_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own empty COPYTRADE_HOME, so none touches the real one.

    It is a fresh directory of its own, apart from the test's `tmp_path`.
    """
    home = tmp_path_factory.mktemp("copytrade-home")
    home.chmod(0o700)
    monkeypatch.setenv("COPYTRADE_HOME", str(home))
    # A developer's COPYTRADE_DEBUG=1 must not change what the tests see.
    monkeypatch.delenv("COPYTRADE_DEBUG", raising=False)
    return home


@pytest.fixture(autouse=True)
def forget_secrets() -> None:
    """Tokens a test registered for redaction must not redact another test's text."""
    from copytrade.redact import _clear_for_tests

    _clear_for_tests()
