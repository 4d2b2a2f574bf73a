"""The real `python -m server` process (gunicorn, gthread) on the real Gemma 3 270M model."""
from __future__ import annotations

import os
import shutil
import threading
import time

import openai
import pytest
import requests

from scripts import stack
from tests.gemma_models import models_dir  # noqa: F401  the module's Gemma folder
from tests.helpers import slots_busy, wait_until

GEMMA_ID = "gemma-3-270m-Q4_K_M"


@pytest.fixture(scope="module")
def server_url(models_dir, tmp_path_factory) -> str:
    with stack.backend(models_dir, tmp_path_factory.mktemp("logs"), {"N_CTX": "1024"}) as url:
        yield url


def generate(url: str, model: str = GEMMA_ID, timeout_s: float = 60, **fields) -> requests.Response:
    body = {"model": model, "prompt": "Hello", "max_tokens": 4, "temperature": 0, **fields}
    return requests.post(f"{url}/api/generate", json=body, timeout=timeout_s)


def test_health_over_http(server_url):
    body = requests.get(f"{server_url}/health", timeout=10).json()

    assert body["status"] == "ok"
    assert isinstance(body["gpu_offload"], bool)
    assert body["models"]["total"] == 1


def test_openai_client_gets_completion_and_chat_completion(server_url):
    client = openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", timeout=60, max_retries=0)

    completion = client.completions.create(model=GEMMA_ID, prompt="The sky is", max_tokens=6, temperature=0)
    chat = client.chat.completions.create(
        model=GEMMA_ID, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0)
    stream = client.chat.completions.create(
        model=GEMMA_ID, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, stream=True)

    assert completion.choices[0].text
    assert completion.model == GEMMA_ID
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens > 0
    assert [chunk.object for chunk in stream][-1] == "chat.completion.chunk"
    assert [model.id for model in client.models.list()] == [GEMMA_ID]


def test_two_concurrent_requests_are_generated_together(server_url):
    spans: dict[str, tuple[float, float]] = {}  # prompt -> (first event, last event)

    def ask(prompt: str) -> None:
        body = {"model": GEMMA_ID, "prompt": prompt, "max_tokens": 24, "temperature": 0, "stream": True}
        with requests.post(f"{server_url}/v1/completions", json=body, stream=True, timeout=120) as answer:
            times = [time.monotonic() for line in answer.iter_lines() if line.startswith(b"data: {")]
        spans[prompt] = (times[0], times[-1])

    # Counting: neither answer ends early at an end of sequence.
    threads = [threading.Thread(target=ask, args=(prompt,)) for prompt in ("1, 2, 3, 4,", "10, 11, 12, 13,")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(spans) == 2
    # One at a time, the second's first token would come after the first's last.
    assert max(first for first, _ in spans.values()) < min(last for _, last in spans.values())


def test_model_copied_in_while_running_is_listed_and_answers(server_url, models_dir, gemma_gguf):
    staging = models_dir / ".staging"
    staging.mkdir(exist_ok=True)
    shutil.copyfile(gemma_gguf, staging / "hot-added-Q4_K_M.gguf")
    assert "hot-added-Q4_K_M" not in _listed(server_url)  # hidden while it is being written

    os.replace(staging / "hot-added-Q4_K_M.gguf", models_dir / "hot-added-Q4_K_M.gguf")
    try:
        listed = _listed(server_url)
        answer = generate(server_url, model="hot-added")
    finally:
        (models_dir / "hot-added-Q4_K_M.gguf").unlink()

    assert "hot-added-Q4_K_M" in listed
    assert answer.status_code == 200
    assert isinstance(answer.json()["response"], str)


def test_client_disconnecting_mid_stream_frees_the_model(server_url):
    # Counting goes on for the whole context: without the disconnect this would hold a slot for many seconds.
    body = {"model": GEMMA_ID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 900, "temperature": 0,
            "stream": True}
    with requests.post(f"{server_url}/v1/completions", json=body, stream=True, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith(b"data: {")

    wait_until(lambda: slots_busy(server_url) == 0, 2.0, "the abandoned generation's slot to be freed")
    answer = generate(server_url, timeout_s=30)

    assert answer.status_code == 200


def test_unknown_model_over_http_is_json_404(server_url):
    answer = generate(server_url, model="missing-model")

    assert answer.status_code == 404
    assert answer.json()["code"] == "model_not_found"


def _listed(url: str) -> list[str]:
    return [model["id"] for model in requests.get(f"{url}/v1/models", timeout=10).json()["data"]]
