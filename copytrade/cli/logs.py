"""Logging to a private file in the home: the terminal stays for the live table, and the
SDK's own error logging (timeouts and the like) lands in the file, not on stderr."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from copytrade.home import ensure_private_dir

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_file(log_dir: Path, name: str = "copytrade.log") -> Path:
    ensure_private_dir(log_dir)
    path = log_dir / name
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_copytrade", False):
            root.removeHandler(old)
    handler._copytrade = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path
