"""Logging to a private file in the home: the terminal stays for the live table, and the
SDK's own error logging (timeouts and the like) lands in the file, not on stderr."""

from __future__ import annotations

import logging
from pathlib import Path

from copytrade.home import ensure_private_dir, ensure_private_file
from copytrade.redact import install, install_everywhere

FORMAT = "%(asctime)s IST %(levelname)s %(name)s: %(message)s"


class _IstFormatter(logging.Formatter):
    """Log times in IST, labelled, like everything else copytrade shows."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        from datetime import UTC, datetime

        from copytrade.core.ist import to_ist

        moment = to_ist(datetime.fromtimestamp(record.created, UTC))
        return f"{moment:%Y-%m-%d %H:%M:%S},{int(record.msecs):03d}"


def log_to_file(log_dir: Path, name: str = "copytrade.log") -> Path:
    ensure_private_dir(log_dir)
    path = log_dir / name
    # 0600 even for a log an older version left readable by others.
    ensure_private_file(path)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_IstFormatter(FORMAT))
    install(handler)  # SDK records quote broker replies and exception texts
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_copytrade", False):
            root.removeHandler(old)
    handler._copytrade = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_everywhere()  # and any other handler a library or test put on the root
    return path
