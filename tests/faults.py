"""Faults the tests inject into real services: network ones, through a proxy the test owns."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """A loopback TCP proxy a test owns, in front of a service (Asterisk's WebSocket, PostgreSQL):
    `cut()` closes every connection (a network blip), `blackhole()` keeps them open but passes
    nothing either way (a half-open connection: a NAT or proxy that forgot it), `reject()` closes
    every new connection at once (the service is down), `heal()` goes back to passing traffic."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode = "pass"  # pass | blackhole | reject
        self.connections: list[tuple[socket.socket, socket.socket]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "reject":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the connect had a deadline; reads wait as long as the link is idle
            with self._lock:
                self.connections.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "pass":
                    sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            connections, self.connections = self.connections, []
        self._close(connections)

    @staticmethod
    def _close(connections: list[tuple[socket.socket, socket.socket]]) -> None:
        for pair in connections:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def reject(self) -> None:
        """The service goes down: open connections are cut, new ones closed at once."""
        self.mode = "reject"
        self.cut()

    def heal(self) -> None:
        """Pass traffic again; connections black-holed meanwhile are dropped (their data is lost).
        Traffic passes before they are closed: a client reconnecting the moment its connection
        is cut gets a working one, not one more black hole."""
        with self._lock:
            stale, self.connections = (self.connections, []) if self.mode != "pass" else ([], self.connections)
            self.mode = "pass"
        self._close(stale)

    def close(self) -> None:
        self.listener.close()
        self.cut()
