"""The fake Hub's HTTP/1.1 server: raw socket control for drops, resets, stalls and throttling."""
from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.fakes.hub_faults import Fault, RequestRecord
from tests.fakes.hub_payloads import Reply, error_reply
from tests.fakes.hub_routes import answer, classify, request_id

if TYPE_CHECKING:
    from tests.fakes.hub import FakeHub

logger = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
THROTTLE_TICKS_PER_S = 20  # a throttled response is sent in this many slices a second
INVERT = bytes(255 - b for b in range(256))


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeHub.stop closes connections itself and joins with a deadline
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], hub: FakeHub) -> None:
        self.hub = hub
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        self.lock = threading.Lock()
        super().__init__(address, HubRequestHandler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # HTTPServer's own does a reverse DNS lookup we don't need
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self.lock:
            self.connections.add(request)
            self.threads.add(thread)
        thread.start()

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        """Wake every handler: blocked reads see EOF, blocked writes fail."""
        with self.lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request, client_address) -> None:
        logger.exception("fake hub: error serving %s", client_address)


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    sys_version = ""
    server: HubHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        logger.debug("fake hub: " + format, *args)

    def do_GET(self) -> None:
        self.serve("GET")

    def do_HEAD(self) -> None:
        self.serve("HEAD")

    def serve(self, method: str) -> None:
        hub = self.server.hub
        self.discard_request_body()
        url = urlsplit(self.path)
        target = classify(hub.config, url.path)
        headers = {name.title(): value for name, value in self.headers.items()}
        record = RequestRecord(
            method, url.path, url.query, headers.get("Range"), "Authorization" in headers,
            self.client_address[1], headers.get("Host"), target.place, target.repo_id, target.files,
        )
        hub.log.append(record)
        fault = hub.faults.take(record, target.places)
        record.fault = fault.kind if fault else None
        try:
            self.serve_target(method, target, url.query, headers, fault, record)
        except OSError:  # the client went away, or the hub is stopping
            self.close_connection = True
        finally:
            hub.log.finish(record)

    def serve_target(self, method, target, query, headers, fault: Fault | None, record: RequestRecord) -> None:
        hub = self.server.hub
        if fault is not None and fault.kind == "hang" and not self.wait(fault.seconds):
            self.close_quietly(reset=False)
            return
        if fault is not None and fault.kind.startswith("disconnect"):
            self.close_quietly(reset=fault.kind == "disconnect_reset")
            return
        if fault is not None and fault.kind == "status":
            reply = error_reply(fault.code, None, f"fake hub: scripted {fault.code}")
            if fault.retry_after is not None:
                reply.headers.append(("Retry-After", fault.retry_after))
        else:
            if fault is not None and fault.kind == "ignore_range":
                headers.pop("Range", None)
            reply = answer(hub.config, target, query, headers)
        self.send_head(reply, record)
        if method != "HEAD":
            self.send_body(reply, fault, record)

    def discard_request_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def send_head(self, reply: Reply, record: RequestRecord) -> None:
        # Recorded before the head goes out: a client that has the answer must find it in the log.
        record.status = reply.status
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(reply.content_length))
        self.send_header("X-Request-Id", request_id())
        self.end_headers()

    def send_body(self, reply: Reply, fault: Fault | None, record: RequestRecord) -> None:
        total = reply.content_length
        cut = total
        if fault is not None and fault.kind in ("drop", "reset", "stall"):
            cut = min(fault.after_bytes, total)
        source = BodySource(reply, fault)
        try:
            self.send_span(source, 0, cut, record)
            if cut == total and (fault is None or fault.kind != "stall"):
                return
            if fault.kind in ("drop", "reset"):
                self.close_quietly(reset=fault.kind == "reset")
                return
            if not self.wait(fault.seconds):
                self.close_quietly(reset=False)
                return
            self.send_span(source, cut, total, record)
        finally:
            source.close()

    def send_span(self, source: BodySource, start: int, end: int, record: RequestRecord) -> None:
        """Send body bytes [start, end), paced when the hub is throttled.

        Each slice is counted before it is sent (and taken back if the send fails): a client holding the
        last byte must never see a count that lacks it (the server thread may run again only later).
        """
        began, pos = time.monotonic(), start
        while pos < end:
            rate = self.server.hub.throttle_bps
            count = min(end - pos, CHUNK_BYTES if not rate else max(1024, rate // THROTTLE_TICKS_PER_S))
            if rate:
                ahead_s = (pos - start) / rate - (time.monotonic() - began)
                if ahead_s > 0:
                    time.sleep(ahead_s)
            record.body_bytes += count
            try:
                source.send(self.connection, pos, count)
            except BaseException:
                record.body_bytes -= count
                raise
            pos += count

    def wait(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: forever); False when the hub stops or the test releases stalls first."""
        hub = self.server.hub
        generation = hub.faults.release_generation
        deadline = None if seconds is None else time.monotonic() + seconds
        while not hub.stopping.is_set() and hub.faults.release_generation == generation:
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return True
            hub.stopping.wait(left)
        return False

    def close_quietly(self, reset: bool) -> None:
        """End the connection mid-response: FIN (drop) or RST (reset, via SO_LINGER 0)."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()  # the socket's fd closes only when its file objects are closed too
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BodySource:
    """A reply's body bytes, sent with sendall or sendfile, inverted for a wrong_bytes fault."""

    def __init__(self, reply: Reply, fault: Fault | None) -> None:
        self.reply = reply
        self.invert_from = fault.from_offset if fault is not None and fault.kind == "wrong_bytes" else None
        blob = reply.blob
        self.fd = os.open(blob.path, os.O_RDONLY) if blob is not None and blob.path is not None else None

    def send(self, conn: socket.socket, pos: int, count: int) -> None:
        reply = self.reply
        if reply.blob is None:
            conn.sendall(memoryview(reply.body)[pos:pos + count])
            return
        offset = reply.start + pos  # offset in the file
        if self.invert_from is not None:
            conn.sendall(self.inverted(self.read(offset, count), offset))
        elif self.fd is not None:
            while count > 0:
                sent = os.sendfile(conn.fileno(), self.fd, offset, count)
                if sent == 0:
                    raise ConnectionError("sendfile sent nothing")
                offset, count = offset + sent, count - sent
        else:
            conn.sendall(memoryview(reply.blob.data)[offset:offset + count])

    def read(self, offset: int, count: int) -> bytes:
        if self.fd is not None:
            return os.pread(self.fd, count, offset)
        return self.reply.blob.data[offset:offset + count]

    def inverted(self, data: bytes, offset: int) -> bytes:
        keep = max(0, min(len(data), self.invert_from - offset))
        return data[:keep] + data[keep:].translate(INVERT)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
