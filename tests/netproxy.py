"""A TCP proxy on loopback for tests: records every byte that crosses it, and can tamper.

It stands between a client and a server (e.g. nodes and the coordinator, or a data node
and the compute node). `captured()` returns everything seen in both directions;
`tamper` (a callable taking direction and bytes, returning bytes or None to drop) lets a
test flip, drop, duplicate or replay data; `partition()` stops forwarding (and closes new
connections) until `heal()`. Bounded: it keeps at most `max_capture` bytes.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

Tamper = Callable[[str, bytes], "bytes | None"]


class RecordingProxy:
    def __init__(self, target_port: int, *, listen_port: int = 0, target_host: str = "127.0.0.1",
                 max_capture: int = 256 << 20) -> None:
        self.target = (target_host, target_port)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", listen_port))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.tamper: Tamper | None = None
        self.max_capture = max_capture
        self._captured = bytearray()
        self._lock = threading.Lock()
        self._partitioned = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def captured(self) -> bytes:
        with self._lock:
            return bytes(self._captured)

    def partition(self) -> None:
        """Stop forwarding: drop live connections and refuse new ones until heal()."""
        self._partitioned.set()
        self._drop_all()

    def heal(self) -> None:
        self._partitioned.clear()

    def close(self) -> None:
        self._closed.set()
        try:
            self.server.close()
        except OSError:
            pass
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self._partitioned.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while not self._partitioned.is_set():
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    room = self.max_capture - len(self._captured)
                    if room > 0:
                        self._captured += data[:room]
                if self.tamper is not None:
                    data = self.tamper(direction, data)
                    if data is None:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
