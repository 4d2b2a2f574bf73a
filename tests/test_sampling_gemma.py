"""What a request's sampling settings do on the real Gemma 3 270M, through the backend's own app: `stop`, `seed`,
`top_k`, `top_p`, embeddings and the /stats counters.

Each comparison of generated text is between first requests of fresh backends on this CPU: a second request
with the same prompt would read it from the slot's cache, in another batch shape that may round differently."""
from __future__ import annotations

import json
import math

import pytest

from server.app import create_app
from server.settings import Settings
from tests.gemma_models import gemma_folder

GEMMA_ID = "gemma-3-270m-Q4_K_M"
COUNTING = {"model": GEMMA_ID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 24}


@pytest.fixture
def first_answer(tmp_path_factory, gemma_gguf):
    """`first_answer(path, body)`: the JSON answer of a fresh backend (its own models folder, so no prompt
    cache is shared) to its first request."""
    def answer(path: str, body: dict) -> dict:
        folder = gemma_folder(gemma_gguf, tmp_path_factory.mktemp("fresh"))
        app = create_app(Settings(models_dir=str(folder), n_ctx=512, parallel=1))
        try:
            response = app.test_client().post(path, json=body)
            assert response.status_code == 200, response.get_data(as_text=True)
            return response.get_json() if not body.get("stream") else {"sse": response.get_data(as_text=True)}
        finally:
            app.extensions["backend"].residency.close()
    return answer


def text_of(answer: dict) -> str:
    return answer["choices"][0]["text"]


def streamed_text(sse: str) -> str:
    chunks = [json.loads(line[len("data: "):]) for line in sse.splitlines()
              if line.startswith("data: {")]
    return "".join(chunk["choices"][0]["text"] for chunk in chunks)


def test_stop_cuts_the_text_before_the_string_streamed_or_not(first_answer):
    whole = text_of(first_answer("/v1/completions", {**COUNTING, "temperature": 0}))
    assert len(whole) > 12, whole
    stop = whole[6:9]  # a piece from the middle: the text before its first appearance is what must come back
    expected = whole[:whole.index(stop)]

    cut = first_answer("/v1/completions", {**COUNTING, "temperature": 0, "stop": [stop]})
    streamed = first_answer("/v1/completions", {**COUNTING, "temperature": 0, "stop": stop, "stream": True})

    assert (text_of(cut), cut["choices"][0]["finish_reason"]) == (expected, "stop")
    assert streamed_text(streamed["sse"]) == expected  # held back until it could no longer be the stop string


def test_a_seed_repeats_a_sampled_answer_and_another_seed_changes_it(first_answer):
    sampled = {**COUNTING, "prompt": "Once upon a time", "temperature": 1.5, "max_tokens": 16}

    first = text_of(first_answer("/v1/completions", {**sampled, "seed": 42}))
    again = text_of(first_answer("/v1/completions", {**sampled, "seed": 42}))
    other = text_of(first_answer("/v1/completions", {**sampled, "seed": 43}))

    assert first == again
    assert other != first


def test_top_k_1_and_a_tiny_top_p_sample_what_greedy_decoding_picks(first_answer):
    greedy = text_of(first_answer("/v1/completions", {**COUNTING, "temperature": 0}))
    top_k = text_of(first_answer("/v1/completions", {**COUNTING, "temperature": 1.5, "seed": 7, "top_k": 1}))
    top_p = text_of(first_answer("/v1/completions", {**COUNTING, "temperature": 1.5, "seed": 7, "top_p": 1e-6}))

    assert top_k == greedy
    assert top_p == greedy


@pytest.fixture(scope="module")
def client(tmp_path_factory, gemma_gguf):
    folder = gemma_folder(gemma_gguf, tmp_path_factory.mktemp("stats-models"))
    app = create_app(Settings(models_dir=str(folder), n_ctx=512))
    yield app.test_client()
    app.extensions["backend"].residency.close()


def test_embeddings_are_one_unit_vector_an_input_and_alike_for_alike_text(client):
    answer = client.post("/v1/embeddings", json={"model": GEMMA_ID, "input": ["a red apple", "a red apple",
                                                                             "the stock market fell"]})
    body = answer.get_json()
    vectors = [item["embedding"] for item in body["data"]]

    assert answer.status_code == 200 and body["object"] == "list"
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 100
    assert all(abs(math.fsum(x * x for x in v) - 1) < 1e-3 for v in vectors)  # normalized, as OpenAI's

    def cosine(a, b):
        return math.fsum(x * y for x, y in zip(a, b))

    assert cosine(vectors[0], vectors[1]) > 0.99  # the same text in another sequence of the batch
    assert cosine(vectors[0], vectors[2]) < cosine(vectors[0], vectors[1])
    assert body["usage"]["prompt_tokens"] > 0


def test_stats_count_what_the_answers_report(client):
    before = client.get("/stats").get_json()
    answer = client.post("/v1/completions", json={"model": GEMMA_ID, "prompt": "The sky over the sea is",
                                                  "max_tokens": 5, "temperature": 0}).get_json()
    after = client.get("/stats").get_json()

    usage = answer["usage"]
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    assert after["generated_tokens"] - before["generated_tokens"] == usage["completion_tokens"]
    assert after["prompt_tokens"] - before["prompt_tokens"] == usage["prompt_tokens"] - cached
    assert after["ttft_seconds"]["count"] == before["ttft_seconds"]["count"] + 1
