"""A request nobody waits for never holds the model (docs/api.md, Generating), on the real Gemma 3 270M: the
backend (`python -m server`) behind the proxy under gunicorn, as deployed.

A long generation (~16 s: counting to the end of a 1024-token context) is abandoned, by a client that hangs
up or by the proxy's BACKEND_TIMEOUT_S passing, streamed or not; the next request must then be answered
at once (a 4-token answer takes ~0.2 s) instead of waiting behind the abandoned one.
"""
from __future__ import annotations

import threading
import time

import pytest
import requests

import scripts.stack
from tests.gemma_models import gemma_folder
from tests.helpers import free_port, slots_busy, wait_until

GEMMA_ID = "gemma-3-270m-Q4_K_M"
BACKEND_TIMEOUT_S = 3
NEXT_ANSWER_S = 2.0  # the contract's "within a second" for the stop, plus the short answer itself
LONG = {"model": GEMMA_ID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 1000, "temperature": 0}
SHORT = {"model": GEMMA_ID, "prompt": "Hello", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    """URLs of the backend and of a proxy in front of it whose BACKEND_TIMEOUT_S is short."""
    tmp = tmp_path_factory.mktemp("cancel")
    models = gemma_folder(gemma_gguf, tmp / "models")
    # One thread: two OpenMP threads on cores shared with other work slow down tenfold at their barriers.
    # One slot: the abandoned generation holds it, so the next request is answered at once only if it is freed
    # (and a stream can time out queued behind it).
    backend_env = {"N_CTX": "1024", "N_THREADS": "1", "PARALLEL": "1"}
    proxy_env = {"BACKEND_TIMEOUT_S": str(BACKEND_TIMEOUT_S)}
    no_hub = f"http://127.0.0.1:{free_port()}"
    with scripts.stack.backend(models, tmp, backend_env) as backend_url, \
            scripts.stack.proxy(models, tmp, no_hub, backend_url, proxy_env) as (proxy_url, _):
        requests.post(backend_url + "/v1/completions", json=SHORT, timeout=120).raise_for_status()  # loaded
        yield {"backend": backend_url, "proxy": proxy_url}


@pytest.fixture(autouse=True)
def idle_backend(stack):
    """Each case starts with the model free, even where an earlier case left it generating."""
    requests.post(stack["backend"] + "/v1/completions", json=SHORT, timeout=120).raise_for_status()


def hang_up(stack: dict, stream: bool, server: str = "proxy", after_s: float = 1) -> None:
    """The client gives up: a plain request after `after_s`, a stream after its first event."""
    url = stack[server] + "/v1/completions"
    if stream:
        with requests.post(url, json={**LONG, "stream": True}, stream=True, timeout=10) as answer:
            assert next(answer.iter_lines()).startswith(b"data: {")
        return
    with pytest.raises(requests.ReadTimeout):
        requests.post(url, json=LONG, timeout=(5, after_s))


def time_out(stack: dict, stream: bool) -> None:
    """The proxy gives up after BACKEND_TIMEOUT_S. A healthy backend streams a token every few ms, so a
    stream times out waiting for its first event: here, queued behind a long request (sent to the
    backend directly) whose client hangs up a second after that."""
    holder = threading.Thread(target=hang_up, args=(stack, False, "backend", BACKEND_TIMEOUT_S + 1))
    if stream:
        holder.start()
        wait_until(lambda: slots_busy(stack["backend"]) == 1, 30, "the long request to hold the one slot")
    answer = requests.post(stack["proxy"] + "/v1/completions", json={**LONG, "stream": stream}, timeout=30)
    if stream:
        holder.join(30)
    assert (answer.status_code, answer.json()["error"]["code"]) == (504, "backend_timeout")  # OpenAI shape


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("abandon", [hang_up, time_out], ids=["client_hangs_up", "backend_timeout"])
def test_request_after_an_abandoned_generation_is_answered_at_once(stack, abandon, stream):
    abandon(stack, stream)
    started = time.monotonic()
    answer = requests.post(stack["proxy"] + "/v1/generate", json=SHORT, timeout=30)
    elapsed_s = time.monotonic() - started

    print(f"next request answered {answer.status_code} in {elapsed_s:.2f} s")
    assert answer.status_code == 200, answer.text
    assert elapsed_s < NEXT_ANSWER_S


def test_backend_stops_at_the_deadline_the_proxy_sends(stack):
    started = time.monotonic()
    answer = requests.post(stack["backend"] + "/v1/completions", json=LONG, headers={"X-Request-Timeout-S": "1"},
                           timeout=30)
    elapsed_s = time.monotonic() - started

    assert answer.status_code == 504 and answer.json()["error"]["code"] == "backend_timeout", answer.text
    assert elapsed_s < 1.5
