"""One `follow` per home: an exclusive lock on a file, released by the OS if we die."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from copytrade.errors import AlreadyRunningError
from copytrade.home import PRIVATE_FILE_MODE


def acquire_follow_lock(path: Path) -> IO[str]:
    """Hold the returned file open for as long as follow runs."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    if os.name == "posix":
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # a lock file left at 0644 is tightened
    handle = os.fdopen(descriptor, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read().strip() or "another process"
        handle.close()
        raise AlreadyRunningError(f"copytrade follow is already running on this home "
                                  f"(pid {holder}); stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
