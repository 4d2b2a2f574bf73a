"""A fault-injecting TCP relay on 127.0.0.1 in front of a real HTTP server (the registry): it reads each
HTTP/1.1 exchange on a connection, counts the body bytes it forwards, and cuts a connection after
`cut_after_bytes` of a matching response body, at most `cuts` times. `failures` makes requests fail before
they reach the server, for pushes: each (method, path part, how) is used once, in order, by the first
request that matches it; how is "503" (answered so), "drop" (the connection closed mid-body) or "wait" (held
until `release` is set, then relayed)."""
from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

BLOCK_BYTES = 64 * 1024


@dataclass
class RelayStats:
    body_bytes: int = 0  # response body bytes forwarded for requests whose path matched
    cuts: int = 0
    ranges: list[str] = field(default_factory=list)  # the Range header of each matching GET ("" if none)


class FaultRelay:
    """`with FaultRelay(("127.0.0.1", port), cut_after_bytes=..., cuts=2) as relay:` then use relay.host."""

    def __init__(self, upstream: tuple[str, int], cut_after_bytes: int = 0, cuts: int = 0,
                 path_contains: str = "/blobs/", failures: list[tuple] | None = None):
        self.upstream, self.cut_after_bytes, self.cuts_left = upstream, cut_after_bytes, cuts
        self.path_contains = path_contains
        self.failures = list(failures or [])
        self.failed: list[str] = []  # "METHOD how" of each request failed
        self.held, self.release = threading.Event(), threading.Event()
        self.stats = RelayStats()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> "FaultRelay":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as server:
            from_client, from_server = client.makefile("rb"), server.makefile("rb")
            with contextlib.suppress(OSError):
                while self._exchange(from_client, client, from_server, server):
                    pass

    def _exchange(self, from_client, client: socket.socket, from_server, server: socket.socket) -> bool:
        """Relay one request and its response; False once the connection is over (closed or cut)."""
        request = _read_head(from_client)
        if not request:
            return False
        method, path = request[0].split()[:2]
        headers = _headers(request)
        how = self._failure(method.decode(), path.decode())
        if how == "wait":
            self.held.set()
            self.release.wait(30)
        elif how is not None:
            return self._fail(how, from_client, client, int(headers.get("content-length", 0)))
        server.sendall(b"".join(request) + from_client.read(int(headers.get("content-length", 0))))
        watched = method == b"GET" and self.path_contains.encode() in path
        if watched:
            with self._lock:
                self.stats.ranges.append(headers.get("range", b"").decode())
        response = _read_head(from_server)
        if not response:
            return False
        client.sendall(b"".join(response))
        status, headers = response[0].split()[1], _headers(response)
        if method == b"HEAD" or status in (b"204", b"304"):
            return True
        if "content-length" not in headers:  # not seen from the registry; relay to the end and close
            while block := from_server.read1(BLOCK_BYTES):
                client.sendall(block)
            return False
        return self._relay_body(from_server, client, int(headers["content-length"]), watched)

    def _failure(self, method: str, path: str) -> str | None:
        """How to fail this request: the first failure that matches it, after letting its `skip` matching
        requests through (a failure is (method, path part, how) or (method, path part, how, skip))."""
        with self._lock:
            for index, (wanted, part, how, *skip) in enumerate(self.failures):
                if method == wanted and part in path:
                    if skip and skip[0] > 0:
                        self.failures[index] = (wanted, part, how, skip[0] - 1)
                        return None
                    del self.failures[index]
                    self.failed.append(f"{method} {how}")
                    return how
        return None

    @staticmethod
    def _fail(how: str, from_client, client: socket.socket, length: int) -> bool:
        if how == "drop":
            from_client.read(min(length, BLOCK_BYTES) // 2)
            client.shutdown(socket.SHUT_RDWR)
            return False
        from_client.read(length)
        body = b'{"errors":[{"code":"UNAVAILABLE"}]}'
        client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    def _relay_body(self, from_server, client: socket.socket, length: int, watched: bool) -> bool:
        with self._lock:
            cut_at = self.cut_after_bytes if watched and self.cuts_left > 0 else None
            if cut_at is not None and cut_at < length:
                self.cuts_left -= 1
            else:
                cut_at = None
        sent = 0
        while sent < length:
            limit = min(BLOCK_BYTES, length - sent, (cut_at - sent) if cut_at is not None else BLOCK_BYTES)
            block = from_server.read1(limit)
            if not block:
                return False
            client.sendall(block)
            sent += len(block)
            if watched:
                with self._lock:
                    self.stats.body_bytes += len(block)
            if cut_at is not None and sent >= cut_at:
                with self._lock:
                    self.stats.cuts += 1
                client.shutdown(socket.SHUT_RDWR)  # the proxy sees the body end early
                return False
        return True


def _read_head(stream) -> list[bytes]:
    """The request or status line and header lines up to the blank line (kept); [] at end of stream."""
    lines = []
    while line := stream.readline(65536):
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return lines
    return []


def _headers(head: list[bytes]) -> dict[str, bytes]:
    pairs = (line.split(b":", 1) for line in head[1:] if b":" in line)
    return {name.strip().lower().decode(): value.strip() for name, value in pairs}
