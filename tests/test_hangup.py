"""Noticing clients that went away, without a model: the socket check, the proxy's watch of its client,
the backend's waiter (tests/test_engine_gemma.py shows the engine freeing a slot at the next step, and
tests/test_cancellation_process.py runs the whole of it on the real model)."""
from __future__ import annotations

import socket
import time

import pytest

from core.hangup import CLOSED, OPEN, UNKNOWN, ClientWatch, peer_state
from server.engine.client import Abandoned, Waiter


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_peer_state_tells_a_hang_up_from_an_idle_peer_and_reads_nothing(pair):
    ours, theirs = pair
    assert peer_state(ours) == OPEN
    theirs.sendall(b"GET")
    assert peer_state(ours) == UNKNOWN  # a pipelined request: not a hang-up
    assert ours.recv(3) == b"GET"  # and still there to read
    theirs.close()
    assert peer_state(ours) == CLOSED
    assert peer_state(None) == UNKNOWN


def test_client_watch_shuts_the_backend_connection_when_the_client_hangs_up(pair):
    client_side, client = pair
    backend_side, backend = socket.socketpair()
    with backend_side, backend, ClientWatch(client_side, poll_s=0.05) as watch:
        assert ClientWatch.current() is watch
        watch.attach(backend_side)
        client.close()
        backend.settimeout(2)
        assert backend.recv(1) == b""  # the backend sees the hang-up
        assert watch.client_left
    assert ClientWatch.current() is None


def test_client_watch_leaves_the_connection_alone_once_its_request_ended(pair):
    client_side, client = pair
    backend_side, backend = socket.socketpair()
    with backend_side, backend:
        with ClientWatch(client_side, poll_s=0.05) as watch:
            watch.attach(backend_side)
        client.close()
        time.sleep(0.2)
        backend_side.sendall(b"x")  # still open both ways
        assert backend.recv(1) == b"x" and not watch.client_left


def test_waiter_gives_up_at_its_deadline_until_the_answer_begins():
    now = [0.0]
    waiter = Waiter(timeout_s=2, clock=lambda: now[0])
    waiter.check()
    now[0] = 2.0
    with pytest.raises(Abandoned) as raised:
        waiter.check()
    assert raised.value.code == "backend_timeout" and raised.value.status == 504
    waiter.answering()
    waiter.check()  # a stream under way stops on a hang-up only


@pytest.mark.parametrize("header", [None, "", "soon", "-1", "0", "nan", "inf"])
def test_waiter_without_a_usable_timeout_header_waits_for_ever(header):
    waiter = Waiter.of_request({}, {"X-Request-Timeout-S": header} if header is not None else {})
    assert waiter._deadline is None


def test_waiter_gives_up_when_its_client_hangs_up(pair):
    ours, theirs = pair
    waiter = Waiter(ours)
    waiter.check()
    theirs.close()
    with pytest.raises(Abandoned, match="closed its connection"):
        waiter.check()
