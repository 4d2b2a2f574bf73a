"""End to end with Ollama's own Python client (PyPI `ollama`) and the `openai` SDK against a proxy under gunicorn,
the real backend and the real Gemma 3 270M: pulled from the fake Hub as `hf.co/...` and from a real registry as
an Ollama model, then listed, shown, chatted with (streamed and not), generated from, embedded, seen in memory
(`ps`) and deleted."""
from __future__ import annotations

import math

import ollama
import openai
import pytest
import requests

import scripts.stack
from scripts.gguf_files import sha256_file
from tests.fakes.hub import FakeHub
from tests.helpers import stack_dirs
from scripts.registry import DOCKER_MANIFEST, OLLAMA_MODEL
from tests.registry import running_registry

REPO = "google/gemma-3-270m-GGUF"
HUB_NAME = f"hf.co/{REPO}:Q4_K_M"
KEY = "ollama-e2e-key"
SAY_HI = [{"role": "user", "content": "Say hi"}]
GREEDY = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    tmp = tmp_path_factory.mktemp("ollama-e2e")
    models, logs = stack_dirs(tmp)
    with FakeHub() as hub, running_registry(tmp / "registry") as registry:
        hub.add_repo(REPO, files={gemma_gguf.name: gemma_gguf})
        registry.publish("library/gemma3", "270m", [(gemma_gguf, OLLAMA_MODEL, None)], DOCKER_MANIFEST,
                         "application/vnd.docker.container.image.v1+json")
        with scripts.stack.backend(models, logs) as backend_url:
            env = {"INSECURE_REGISTRIES": registry.host, "PROXY_API_KEY": KEY, "DOCKER_CONFIG": str(tmp / "no-docker")}
            with scripts.stack.proxy(models, logs, hub.url, backend_url, env) as (url, _):
                yield {"url": url, "registry": registry, "gemma": gemma_gguf,
                       "client": ollama.Client(host=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)}


@pytest.fixture(scope="module")
def pulled(stack):
    lines = list(stack["client"].pull(HUB_NAME, stream=True))
    assert lines[-1].status == "success", lines[-3:]
    digest = sha256_file(stack["gemma"])
    assert any(line.digest == f"sha256:{digest}" and line.completed == line.total for line in lines)
    return stack


def test_list_and_show_gemma_pulled_from_the_hub(pulled):
    listed = {m.model: m for m in pulled["client"].list().models}
    assert HUB_NAME in listed and listed[HUB_NAME].details.family == "gemma3"
    assert listed[HUB_NAME].size == pulled["gemma"].stat().st_size
    shown = pulled["client"].show(HUB_NAME)
    assert shown.details.quantization_level == "Q4_K_M" and shown.modelinfo["general.architecture"] == "gemma3"


def test_chat_with_gemma_not_streamed_and_streamed(pulled):
    client = pulled["client"]
    answer = client.chat(model=HUB_NAME, messages=SAY_HI, options=GREEDY)
    assert answer.done and answer.message.content.strip() and 0 < answer.eval_count <= 8
    assert answer.prompt_eval_count > 0 and answer.done_reason in ("stop", "length")
    parts = list(client.chat(model=HUB_NAME, messages=SAY_HI, options=GREEDY, stream=True))
    assert len(parts) > 2 and parts[-1].done and not any(p.done for p in parts[:-1])
    # Not compared with the first answer: its prompt now comes from the slot's cache, and a prompt read in
    # another batch shape may round differently on another CPU.
    assert "".join(p.message.content for p in parts).strip()
    assert parts[-1].eval_count > 0 and parts[-1].eval_duration > 0


def test_generate_with_gemma(pulled):
    answer = pulled["client"].generate(model=HUB_NAME, prompt="The sky is", options=GREEDY)
    assert answer.done and answer.response.strip()
    as_json = pulled["client"].generate(model=HUB_NAME, prompt="Give a JSON object with a key a", format="json",
                                        options={"temperature": 0, "num_predict": 32})
    assert as_json.response.strip().startswith("{")


def test_gemma_from_a_registry_as_an_ollama_model(pulled):
    client, name = pulled["client"], f"{pulled['registry'].host}/library/gemma3:270m"
    statuses = [line.status for line in client.pull(name, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
    assert name in [m.model for m in client.list().models]
    assert client.chat(model=name, messages=SAY_HI, options=GREEDY).message.content.strip()


def test_embed_with_gemma_through_ollama_and_openai(pulled):
    client = pulled["client"]
    answer = client.embed(model=HUB_NAME, input=["The sky is blue", "Stock markets fell"])
    first, second = answer.embeddings
    assert len(first) == len(second) > 100 and first != second
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-3)
    assert len(client.embeddings(model=HUB_NAME, prompt="The sky is blue").embedding) == len(first)
    sdk = openai.OpenAI(base_url=pulled["url"] + "/v1", api_key="unused")
    created = sdk.embeddings.create(model=f"{REPO}:Q4_K_M", input=["The sky is blue"])
    assert len(created.data) == 1 and len(created.data[0].embedding) == len(first)


def test_ps_shows_gemma_loaded_and_unload_clears_it(pulled):
    client, auth = pulled["client"], {"Authorization": f"Bearer {KEY}"}
    assert client.generate(model=HUB_NAME, keep_alive="10m").done_reason == "load"
    running = [m for m in client.ps().models if m.model == HUB_NAME]
    assert running and running[0].size > 0 and running[0].expires_at is not None
    listed = requests.get(pulled["url"] + "/v1/api/running", timeout=30).json()["models"]
    assert f"{REPO}:Q4_K_M" in [m["model"] for m in listed]
    unloaded = requests.post(pulled["url"] + "/v1/api/unload", json={"model": HUB_NAME.removeprefix("hf.co/")},
                             headers=auth, timeout=60)
    assert unloaded.status_code == 200 and unloaded.json()["status"] == "unloaded"
    assert HUB_NAME not in [m.model for m in client.ps().models]


def test_delete_gemma(pulled):
    client = pulled["client"]
    client.pull(HUB_NAME)  # installed, whatever ran before (at once when it already is)
    assert client.delete(HUB_NAME).status == "success"
    assert HUB_NAME not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as gone:
        client.chat(model=HUB_NAME, messages=SAY_HI)
    assert gone.value.status_code == 404
