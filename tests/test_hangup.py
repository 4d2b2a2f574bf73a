"""Noticing clients that went away, without a model: the socket check, the proxy's watch of its client,
the backend's waiter between tokens and while a model is busy (tests/test_cancellation_process.py runs
the whole of it on the real model)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from core.hangup import CLOSED, OPEN, UNKNOWN, ClientWatch, peer_state
from server import generation
from server.loading import LoadedModel
from server.models import ModelRegistry
from server.params import GenerationRequest
from server.runner import ModelRunner
from server.settings import Settings
from server.waiting import Abandoned, Waiter


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


class _TokenLlama:
    """Generates for as long as asked, asking `between_tokens` before each token as InterruptibleLlama does."""

    n_tokens = 0
    between_tokens = None

    def __init__(self):
        self.tokens = 0

    def create_completion(self, prompt, **_sampling):
        while True:
            self.between_tokens()
            self.tokens += 1
            time.sleep(0.001)


def _registry(tmp_path: Path) -> tuple[ModelRegistry, _TokenLlama]:
    (tmp_path / "a-Q4_0.gguf").write_bytes(b"x" * 16)
    llama = _TokenLlama()
    loader = lambda model: LoadedModel(model=model, llama=llama, n_ctx=64, runner=ModelRunner(model.id))  # noqa: E731
    return ModelRegistry(Settings(models_dir=str(tmp_path)), loader=loader), llama


def test_generation_stops_between_tokens_once_nobody_waits(tmp_path, pair):
    registry, llama = _registry(tmp_path)
    ours, theirs = pair
    threading.Timer(0.2, theirs.close).start()
    started = time.monotonic()

    with registry.acquire("a", Waiter(ours)) as lease, pytest.raises(Abandoned):
        lease.call(generation.complete, lease, GenerationRequest(model="a", prompt="count"))

    assert time.monotonic() - started < 1 and llama.tokens > 0
    assert llama.between_tokens is None  # the next request starts without this one's waiter
    registry.acquire("a").release()  # and the model is free


def test_request_waiting_for_a_busy_model_gives_up_when_its_client_hangs_up(tmp_path, pair):
    registry, _ = _registry(tmp_path)
    ours, theirs = pair
    busy = registry.acquire("a")
    threading.Timer(0.2, theirs.close).start()

    with pytest.raises(Abandoned):
        registry.acquire("a", Waiter(ours))
    busy.release()
