"""The batching engine on the real Gemma 3 270M: many requests at once, cancellation, chunked prompts,
prefix reuse, the queue's bound, structured output and memory (docs/api.md, Serving: many requests at once)."""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest

from server.app import create_app
from server.settings import Settings
from tests.gemma_models import models_dir  # noqa: F401  the module's Gemma folder
from tests.helpers import rss_bytes, sse_events, wait_until

MODEL = "gemma-3-270m"


def _app(models_dir: Path, **settings):
    return create_app(Settings(models_dir=str(models_dir), **settings))


@pytest.fixture(scope="module")
def app(models_dir):
    app = _app(models_dir, n_ctx=2048, parallel=8, n_batch=256)
    yield app
    app.extensions["backend"].residency.close()


def _chat(client, content: str, **extra):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _stream_text(client, body: dict) -> tuple[str, list[float]]:
    """The streamed completion's text and the arrival time of each piece."""
    response = client.post("/v1/completions", json={**body, "stream": True}, buffered=False)
    assert response.status_code == 200
    text, times = [], []
    for chunk in response.response:
        for event in sse_events(chunk.decode() if isinstance(chunk, bytes) else chunk):
            if event != "[DONE]":
                piece = json.loads(event)["choices"][0]["text"]
                if piece:
                    text.append(piece)
                    times.append(time.monotonic())
    response.close()
    return "".join(text), times


def test_eight_greedy_streams_at_once_pick_only_tokens_the_request_alone_ranks_top_two(app):
    """Greedy decoding beside 7 others follows the request alone up to rounding: llama.cpp's kernels round
    differently for other batch sizes (and differently on each CPU), so a near tie between two tokens can go
    either way, and after it the texts differ. What holds everywhere: every token a batched stream picked is
    among the two best of the model's distribution for that stream's own prefix, evaluated alone."""
    client = app.test_client()
    prompt = {"model": MODEL, "prompt": "The three primary colors are", "temperature": 0, "max_tokens": 24}
    alone, _ = _stream_text(client, prompt)
    results: list[str] = [""] * 8
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, _stream_text(client, prompt)[0]))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert all(re.search(r"[A-Za-z]{3,}", text) for text in results), results
    ranks = [_ranks_alone(app, prompt["prompt"], text) for text in results]
    same = sum(text == alone for text in results)
    print(f"greedy beside 7 others: {same}/8 identical to the request alone; worst rank {max(map(max, ranks))}")
    assert all(rank < 2 for text_ranks in ranks for rank in text_ranks), list(zip(results, ranks))
    assert max(_ranks_alone(app, prompt["prompt"], alone)) < 2  # the scorer agrees with the lone request too


def _ranks_alone(app, prompt: str, answer: str) -> list[int]:
    """For each token of `answer` after `prompt`, how many tokens the model ranks above it there, evaluated in
    a context of its own (one sequence, nothing beside it), on the engine's thread."""
    import llama_cpp as ll
    import numpy as np

    loaded = app.extensions["backend"].residency.running()[0]
    handle = loaded.llama
    head = handle.tokenize(prompt, add_bos=True, special=True)
    tail = handle.tokenize(answer, add_bos=False, special=False)
    tokens = head + tail

    def score() -> list[int]:
        params = ll.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 256
        params.swa_full = False  # as the engine's context
        params.n_threads = params.n_threads_batch = handle.threads
        ctx = ll.llama_init_from_model(handle.model.model, params)
        batch = ll.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = token, i, 1, 0
                batch.logits[i] = i >= len(head) - 1
            batch.n_tokens = len(tokens)
            assert ll.llama_decode(ctx, batch) == 0
            n_vocab = ll.llama_vocab_n_tokens(handle.vocab)
            ranks = []
            for j, token in enumerate(tail):
                logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, len(head) - 1 + j), shape=(n_vocab,))
                ranks.append(int((logits > logits[token]).sum()))
            return ranks
        finally:
            ll.llama_batch_free(batch)
            ll.llama_free(ctx)

    return loaded.engine.call(score)


def test_client_that_leaves_frees_its_slot_for_the_next_queued_request(models_dir):
    app = _app(models_dir, n_ctx=512, parallel=1)
    client = app.test_client()
    try:
        first = client.post("/v1/completions", json={"model": MODEL, "prompt": "Count:", "max_tokens": 400,
                                                     "stream": True}, buffered=False)
        next(iter(first.response))  # generating
        started: list[float] = []
        waiting = threading.Thread(target=lambda: started.append(_first_piece_time(client)))
        waiting.start()
        wait_until(lambda: client.get("/health").get_json()["queue"] == 1, 30, "the second request queued")
        assert not started  # queued behind the one slot
        left = time.monotonic()
        first.close()  # what the WSGI server does when the client disconnects
        waiting.join(30)
        assert started and started[0] - left < 1.0
    finally:
        app.extensions["backend"].residency.close()


def _first_piece_time(client) -> float:
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 3,
                                                    "stream": True}, buffered=False)
    for chunk in response.response:
        if b'"text":"' in (chunk if isinstance(chunk, bytes) else chunk.encode()):
            response.close()
            return time.monotonic()
    response.close()
    raise AssertionError("no text")


def test_long_prompt_is_read_in_chunks_between_the_running_streams_steps(app):
    client = app.test_client()
    streams: list[list[float]] = []

    def run_stream():
        streams.append(_stream_text(client, {"model": MODEL, "prompt": "List animals:", "max_tokens": 160,
                                             "temperature": 0})[1])

    threads = [threading.Thread(target=run_stream) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: client.get("/health").get_json()["slots"]["busy"] == 3, 60, "the three streams generating")
    # 1,491 tokens or so: 6 chunks of N_BATCH 256; a fresh first word, so no earlier run's cached prefix shortens it.
    long_prompt = f"{uuid.uuid4().hex} " + " ".join(f"word{i}" for i in range(400))
    began = time.monotonic()
    answer = client.post("/v1/completions", json={"model": MODEL, "prompt": long_prompt, "max_tokens": 1})
    ended = time.monotonic()
    for thread in threads:
        thread.join(120)

    assert answer.status_code == 200 and answer.get_json()["usage"]["prompt_tokens"] > 1200
    during = [t for times in streams for t in times if began <= t <= ended]
    assert during, "the streams got no token while the long prompt was read"
    gaps = [b - a for times in streams for a, b in zip(times, times[1:]) if a >= began - 1 and b <= ended + 1]
    # One chunk of the six at most stands between two tokens of a running stream.
    assert max(gaps) < 0.5 * (ended - began), (max(gaps), ended - began)


def test_next_chat_turn_evaluates_only_the_new_tokens(app):
    client = app.test_client()
    turn = [{"role": "user", "content": "Name a fruit."}]
    first = _chat(client, "", messages=turn, max_tokens=8)
    history = turn + [first["choices"][0]["message"], {"role": "user", "content": "And a vegetable?"}]
    second = _chat(client, "", messages=history, max_tokens=8)

    usage = second["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"]
    assert usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"] < 20


def test_a_long_system_prompt_counts_in_prompt_tokens_and_opens_the_first_user_turn(app):
    """Gemma's GGUF here has no chat template: its family's format puts the system text where Gemma 3's
    official template does, at the start of the first user turn (it was dropped before)."""
    system = " ".join(f"Rule {i}: answer politely and briefly." for i in range(120))
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}]
    with_system = _chat(app.test_client(), "", messages=messages, max_tokens=1)
    without = _chat(app.test_client(), "Hello", max_tokens=1)

    handle = app.extensions["backend"].residency.running()[0].llama
    rendered = handle.chat.render(messages).text
    assert rendered.startswith(f"<start_of_turn>user\n{system}\n\nHello<end_of_turn>\n")
    assert with_system["usage"]["prompt_tokens"] == len(handle.tokenize(rendered, add_bos=True, special=True))
    added = with_system["usage"]["prompt_tokens"] - without["usage"]["prompt_tokens"]
    assert added >= len(handle.tokenize(system, add_bos=False)) > 1000


def test_requests_past_the_queue_get_503_server_busy_at_once(models_dir):
    app = _app(models_dir, n_ctx=512, parallel=1, max_queue=2)
    client = app.test_client()
    running = client.post("/v1/completions", json={"model": MODEL, "prompt": "Count:", "max_tokens": 300,
                                                   "stream": True}, buffered=False)
    short = {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
    queued = [threading.Thread(target=lambda: client.post("/v1/completions", json=short)) for _ in range(2)]
    try:
        for thread in queued:
            thread.start()
        wait_until(lambda: client.get("/health").get_json()["queue"] == 2, 20, "two requests queued")
        began = time.monotonic()
        busy = client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
        assert time.monotonic() - began < 1
        assert busy.status_code == 503 and busy.get_json()["error"]["code"] == "server_busy"
        assert busy.headers["Retry-After"]
        streamed_chat = client.post("/v1/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True})
        assert streamed_chat.status_code == 503  # a status, not an error event inside a 200 stream
    finally:
        running.close()
        for thread in queued:
            thread.join(60)
        app.extensions["backend"].residency.close()


def test_json_schema_response_format_gives_valid_json_for_the_schema(app):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    answer = _chat(app.test_client(), "Describe a person as JSON.", max_tokens=60,
                   response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})

    value = json.loads(answer["choices"][0]["message"]["content"])
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_json_object_response_format_gives_a_json_object(app):
    answer = _chat(app.test_client(), "Reply with a JSON object whose key ok is true.", max_tokens=200,
                   response_format={"type": "json_object"})
    content = answer["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{")
    if answer["choices"][0]["finish_reason"] == "stop":  # ended by the grammar, not cut by max_tokens
        assert isinstance(json.loads(content), dict)


def test_schema_without_a_grammar_is_400_naming_the_part(app):
    response = app.test_client().post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"schema": "not an object"}}})
    assert response.status_code == 400
    assert "json_schema" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "word " * 3000}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}], "stream": True}),
])
def test_prompt_longer_than_the_context_says_its_token_count_and_n_ctx(app, path, body):
    response = app.test_client().post(path, json={"model": MODEL, **body})
    message = response.get_json()["error"]["message"]
    assert response.status_code == 400 and "N_CTX" in message and "2048" in message
    assert re.search(r"prompt is \d{4} tokens", message)



def test_memory_stays_flat_over_300_requests(app):
    client = app.test_client()

    def batch(start: int, count: int) -> None:
        def worker(k: int) -> None:
            for i in range(start + k, start + count, 8):
                body = {"model": MODEL, "prompt": f"Item {i}:", "max_tokens": 3, "seed": i,
                        "stream": i % 2 == 0}
                assert client.post("/v1/completions", json=body).status_code == 200
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)

    batch(0, 60)  # warm up: every slot used, caches and allocator settled
    batch(60, 150)  # what the allocator still settles on shows here, not in the second stretch
    middle = rss_bytes()
    batch(210, 150)
    after = rss_bytes()
    # A leak grows with every request: 80 KB a request would be 12 MiB over these 150.
    assert after - middle < 12 << 20, (middle >> 20, after >> 20)
