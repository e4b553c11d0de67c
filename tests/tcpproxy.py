"""A loopback TCP proxy that a test can cut and heal: a network partition on one machine.

    with TcpProxy(target_port) as proxy:        # listens on 127.0.0.1:proxy.port
        ... a client connects to proxy.port instead of the server ...
        proxy.cut()                             # every connection dropped, new ones refused
        proxy.cut(hold=True)                    # ... or new ones held open, silent (a black hole)
        proxy.heal()                            # new connections pass again

Threads, not asyncio: a test's own event loops come and go, the proxy outlives them. One
thread accepts; one thread per connection pumps both directions. Every loop waits at most
POLL seconds on its sockets and then looks at its stop flag, so close() ends them all within
a bound. The upstream address is looked up at each connection, so a server restarted on the
same port is reached again.
"""

from __future__ import annotations

import selectors
import socket
import threading
from contextlib import suppress

POLL = 0.1  # seconds a loop waits on its sockets before it looks at its flags
CONNECT_TIMEOUT = 2.0  # seconds to reach the upstream server
CHUNK = 65536
JOIN_TIMEOUT = 5.0


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._held: list[socket.socket] = []
        self._cut = False
        self._hold = False
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name=f"tcpproxy-{self.port}",
                                          daemon=True)
        self.accepted = 0  # connections passed to the server
        self.refused = 0  # connections closed at once while cut
        self.held = 0  # connections held silent while cut (hold=True)
        self.cuts = 0

    def url(self, scheme: str = "nats") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pipes)

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def cut(self, *, hold: bool = False) -> None:
        """Drop every connection; until heal(), refuse new ones (accept, then close at
        once), or with hold=True accept and hold them without a byte either way."""
        with self._lock:
            self._cut, self._hold = True, hold
            pipes, self._pipes = set(self._pipes), set()
            self.cuts += 1
        for pipe in pipes:
            pipe.drop()

    def heal(self) -> None:
        """New connections pass again; those held while cut are closed (their clients
        connect anew, as after a partition)."""
        with self._lock:
            self._cut = False
            held, self._held = self._held, []
        for sock in held:
            _close(sock)

    def close(self) -> None:
        self._closed.set()
        if self._acceptor.is_alive():
            self._acceptor.join(JOIN_TIMEOUT)
        _close(self._listener)
        with self._lock:
            pipes, self._pipes = set(self._pipes), set()
            held, self._held = self._held, []
        for pipe in pipes:
            pipe.drop()
        for sock in held:
            _close(sock)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the threads --------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            if self._cut:
                if self._hold:
                    self._held.append(client)
                    self.held += 1
                else:
                    self.refused += 1
                    _close(client)
                return
        try:
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError:  # the server is down: the client sees its connection closed
            _close(client)
            return
        pipe = _Pipe(client, upstream, self._forget)
        with self._lock:
            if self._cut:  # cut while connecting upstream
                pipe.drop()
                return
            self._pipes.add(pipe)
            self.accepted += 1
        pipe.start()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)


class _Pipe:
    """One proxied connection: bytes copied both ways until either side closes or drop()."""

    def __init__(self, client: socket.socket, upstream: socket.socket, on_end) -> None:
        self.sockets = (client, upstream)
        self._dropped = threading.Event()
        self._on_end = on_end
        self._thread = threading.Thread(target=self._pump, name="tcpproxy-pipe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def drop(self) -> None:
        """Both sides see the connection end now (shutdown wakes the pump at once)."""
        self._dropped.set()
        for sock in self.sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if not self._thread.is_alive() or self._thread is threading.current_thread():
            for sock in self.sockets:
                _close(sock)

    def _pump(self) -> None:
        client, upstream = self.sockets
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            try:  # dropped (and closed) before this thread ran: OSError, the pipe just ends
                for sock in self.sockets:
                    sock.setblocking(True)
                    selector.register(sock, selectors.EVENT_READ)
                while not self._dropped.is_set():
                    for key, _events in selector.select(POLL):
                        data = key.fileobj.recv(CHUNK)  # type: ignore[union-attr]
                        if not data:
                            return
                        other[key.fileobj].sendall(data)  # type: ignore[index]
            except (OSError, ValueError):  # ValueError: a closed socket's fileno is -1
                return
            finally:
                for sock in self.sockets:
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    _close(sock)
                self._on_end(self)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.close()
