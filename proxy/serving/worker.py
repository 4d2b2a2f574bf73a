"""The proxy's gunicorn worker: gthread, except that a thread is given to a request only once it has fully
arrived, and probes have threads of their own.

gthread hands each new connection to a pool thread, which then blocks reading the request: 41 connections that
sent half a request held every thread, and 24 forwarded plus 20 pull streams queued probes behind them (15 s on
/livez). Here the worker's event loop reads a request's head (and a small body) without blocking; a head that
is not complete within HEAD_TIMEOUT_S is dropped, and an address may have at most MAX_ARRIVING_PER_ADDRESS
connections arriving at once. A complete request for /livez, /readyz or /v1/health goes to PROBE_THREADS
threads that nothing else uses, so probes answer whatever the other threads are doing (docs/api.md, Proxy endpoints).
"""
from __future__ import annotations

import errno
import re
import selectors
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

PROBE_PATHS = frozenset({"/livez", "/readyz", "/v1/health"})
PROBE_THREADS = 4
HEAD_TIMEOUT_S = 15.0  # a request's head (and a small body) must arrive within this after its first byte
MAX_ARRIVING_PER_ADDRESS = 128  # connections of one client address whose request is still arriving (memory, fds)
MAX_HEAD_BYTES = 64 * 1024  # past this gunicorn's own parser answers (it refuses heads that large)
BUFFERED_BODY_BYTES = 1 << 20  # a body up to this long (Content-Length) arrives before a thread is given
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)  # the body waits for our 100


class ArrivingConn(TConn):
    """A connection whose request is read by the event loop until it is complete."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrived = b""
        self.deadline = time.monotonic() + HEAD_TIMEOUT_S

    def complete(self) -> bool:
        """Whether the head (and a Content-Length body up to BUFFERED_BODY_BYTES) has arrived."""
        end = self.arrived.find(b"\r\n\r\n")
        if end < 0:
            return len(self.arrived) >= MAX_HEAD_BYTES
        head = self.arrived[:end + 2]
        length = _CONTENT_LENGTH.search(head)
        wanted = int(length.group(1)) if length and not _EXPECT_CONTINUE.search(head) else 0
        return wanted > BUFFERED_BODY_BYTES or len(self.arrived) >= end + 4 + wanted

    def path(self) -> str:
        line = self.arrived.split(b"\r\n", 1)[0].split(b" ")
        return line[1].split(b"?", 1)[0].decode("latin-1") if len(line) > 1 else ""


class ProbeFirstWorker(ThreadWorker):
    """gthread with requests read by the event loop and a pool of its own for probes."""

    def init_process(self):
        self.probe_pool = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="probe")
        self.arriving: deque[ArrivingConn] = deque()
        self.arriving_from: Counter = Counter()
        super().init_process()

    def accept(self, listener):
        if self.cfg.is_ssl:  # the head cannot be read before the TLS handshake: gthread's own way
            return super().accept(listener)
        try:
            sock, client = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = ArrivingConn(self.cfg, sock, client, listener.getsockname())
        self._await_request(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request begins: read it in the loop too."""
        if self.cfg.is_ssl or not isinstance(conn, ArrivingConn):
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.arrived, conn.deadline = b"", time.monotonic() + HEAD_TIMEOUT_S
        self._await_request(conn)

    def _await_request(self, conn: ArrivingConn) -> None:
        address = _address(conn.client)
        if self.arriving_from[address] >= MAX_ARRIVING_PER_ADDRESS:
            self._drop(conn)
            return
        self.arriving_from[address] += 1
        self.arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_arriving, conn))

    def _on_arriving(self, conn: ArrivingConn, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stop_arriving(conn)
            self._drop(conn)
            return
        conn.arrived += data
        if conn.complete():
            self._stop_arriving(conn)
            self._dispatch(conn)

    def _dispatch(self, conn: ArrivingConn) -> None:
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(conn.arrived)  # gunicorn's parser reads what arrived first
        conn.data_ready = True
        pool = self.probe_pool if conn.path() in PROBE_PATHS else self.tpool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def _stop_arriving(self, conn: ArrivingConn) -> None:
        self.poller.unregister(conn.sock)
        self.arriving.remove(conn)
        self.arriving_from[_address(conn.client)] -= 1

    def _drop(self, conn: ArrivingConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Also drop connections whose request did not arrive in time (called by the loop every second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.arriving if c.deadline <= now]:
            self._stop_arriving(conn)
            self._drop(conn)


def _address(client) -> str:
    return client[0] if isinstance(client, tuple) and client else str(client)
