"""The real Gemma 3 270M through real processes (fake Hub, backend, proxy under gunicorn) and the `openai` SDK:
chat with the very name it was pulled as; after deleting one of two quants, the bare name serves the other.
"""
from __future__ import annotations

import sys

import openai
import pytest
import requests

from tests.fakes.hub import FakeHub
from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

REPO = "google/gemma-3-270m-GGUF"
Q4, Q8 = "gemma-3-270m-Q4_K_M", "gemma-3-270m-Q8_0"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    """The proxy's URL and an SDK client; the repo holds Gemma under a Q4_K_M and a Q8_0 name (same bytes)."""
    folder = tmp_path_factory.mktemp("pulled-names")
    models, logs = stack_dirs(folder)
    with FakeHub() as hub:
        hub.add_repo(REPO, files={f"{Q4}.gguf": gemma_gguf, f"{Q8}.gguf": gemma_gguf})
        with backend(models, logs) as backend_url, proxy(models, logs, hub.url, backend_url) as (url, _):
            yield url, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def chat(sdk: openai.OpenAI, model: str):
    return sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4,
                                       temperature=0)


def pull(url: str, model: str) -> dict:
    answer = requests.post(url + "/v1/api/pull", json={"model": model, "stream": False}, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_chat_with_the_name_gemma_was_pulled_as(stack):
    url, sdk = stack
    assert pull(url, f"{REPO}:Q4_K_M")["status"] == "complete"

    for name in (f"{REPO}:Q4_K_M", REPO, f"hf.co/{REPO}:q4_k_m"):
        answer = chat(sdk, name)
        assert answer.model == Q4 and answer.choices[0].message.content, name


def test_after_deleting_one_of_two_quants_the_bare_name_serves_the_other(stack):
    url, sdk = stack
    pull(url, f"{REPO}:Q4_K_M")
    assert pull(url, f"{REPO}:Q8_0")["status"] == "complete"
    with pytest.raises(openai.NotFoundError) as ambiguous:
        chat(sdk, REPO)
    assert f"{Q4} ({REPO}:Q4_K_M), {Q8} ({REPO}:Q8_0)" in str(ambiguous.value)
    with pytest.raises(openai.NotFoundError):
        chat(sdk, "gemma-3-270m")  # the backend's own rule for ids: two models have this stem

    deleted = requests.delete(url + "/v1/api/delete", json={"model": Q4}, timeout=30)
    assert deleted.status_code == 200, deleted.text

    assert chat(sdk, "gemma-3-270m").model == Q8
    assert chat(sdk, REPO).model == Q8
    with pytest.raises(openai.NotFoundError) as gone:
        chat(sdk, f"{REPO}:Q4_K_M")
    assert f'pull it first: POST /v1/api/pull {{"model": "{REPO}:Q4_K_M"}}' in str(gone.value)
