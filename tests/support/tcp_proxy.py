"""A TCP proxy a test controls, to make a real PostgreSQL or Redis unreachable without touching the server.

Modes: ``up`` forwards; ``down`` closes the listening socket and every open connection (connection refused);
``hang`` accepts connections and never answers (a dependency that hangs).
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0):
        self.target = (target_host, target_port)
        self.mode = "up"
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._port = port
        self._open_listener()

    @property
    def port(self) -> int:
        return self._port

    def _open_listener(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        sock.listen(128)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
                mode = self.mode
            if mode == "hang":
                continue  # hold the connection open, never answer
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        with self._lock:
            self.mode = "down"
            listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        self._drop_all()

    def hang(self) -> None:
        """Accept, never answer (and cut what was forwarding)."""
        self._drop_all()
        with self._lock:
            self.mode = "hang"
        if self._listener is None:
            self._open_listener()

    def up(self) -> None:
        self._drop_all()
        with self._lock:
            self.mode = "up"
        if self._listener is None:
            self._open_listener()

    def close(self) -> None:
        self.down()
