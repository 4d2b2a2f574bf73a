"""Noticing that an HTTP client went away while its request is still being worked on.

A WSGI server only learns that a client left when it writes to it, and a request waiting for a
whole generation writes nothing until the end. So both sides look at the connection itself: the
backend between tokens (server.engine.client), the proxy while it waits for the backend (ClientWatch).
"""
from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# A peer's state as seen without reading from it.
OPEN, CLOSED, UNKNOWN = "open", "closed", "unknown"
WATCH_POLL_S = 0.25  # how often a watch looks whether its request ended (a hang-up wakes it at once)


def peer_state(sock: Optional[socket.socket], wait_s: float = 0.0) -> str:
    """OPEN, CLOSED (the peer closed or reset the connection) or UNKNOWN; consumes nothing.

    UNKNOWN is a socket that cannot be peeked at (TLS) or has bytes waiting (a pipelined request).
    """
    if sock is None or isinstance(sock, ssl.SSLSocket):
        return UNKNOWN
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(wait_s * 1000):
            return OPEN
        return CLOSED if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"" else UNKNOWN
    except (BlockingIOError, InterruptedError):
        return OPEN
    except (OSError, ValueError):  # reset, or a socket closed (fileno -1) on our side
        return CLOSED


class ClientWatch:
    """While a forwarded request waits on the backend, closes the backend connection if the client
    hangs up, so that the backend sees the hang-up too and stops generating.

    The backend connection is handed in by `attach` (proxy.backend.client's connections do it for the watch
    of their thread, `current()`). Nothing is shut down once the `with` block has ended.
    """

    _local = threading.local()

    def __init__(self, client: Optional[socket.socket], poll_s: float = WATCH_POLL_S):
        self._client = client
        self._poll_s = poll_s
        self._backend: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self.client_left = False

    @classmethod
    def current(cls) -> Optional["ClientWatch"]:
        """The watch of the request this thread is forwarding, if any."""
        return getattr(cls._local, "watch", None)

    def __enter__(self) -> "ClientWatch":
        ClientWatch._local.watch = self
        if peer_state(self._client) == OPEN:
            threading.Thread(target=self._watch, name="client-watch", daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        ClientWatch._local.watch = None
        with self._lock:
            self._ended.set()

    def attach(self, backend: Optional[socket.socket]) -> None:
        """The socket the backend answers on; shut down at once if the client left already."""
        with self._lock:
            self._backend = backend
            if self.client_left:
                _shut(backend)

    def _watch(self) -> None:
        while not self._ended.is_set():
            state = peer_state(self._client, self._poll_s)
            if state == UNKNOWN:
                return
            if state == CLOSED:
                with self._lock:
                    if not self._ended.is_set():
                        self.client_left = True
                        _shut(self._backend)
                return


def _shut(sock: Optional[socket.socket]) -> None:
    """Wake the thread blocked reading `sock` and send the peer a FIN; the owner still closes it."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Attaching:
    """A urllib3 connection that hands its socket to its thread's ClientWatch before waiting for the answer."""

    def getresponse(self):
        watch = ClientWatch.current()
        if watch is not None:
            watch.attach(self.sock)
        return super().getresponse()


class _Connection(_Attaching, HTTPConnection):
    pass


class _TLSConnection(_Attaching, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections a ClientWatch can shut down (mount it on the backend's session)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
