"""Ollama's API on the proxy with the real `ollama` client, against the fake Hub and the fake backend
(tests/fakes/backend.py under gunicorn): shapes, streaming, option mapping, errors, pull lines, delete."""
from __future__ import annotations

import json
import math
from typing import Iterator

import ollama
import pytest
import requests

from proxy.errors import ProxyError
from scripts.gguf_files import sha256_file
from tests.helpers import fake_backend_process, serving
from tests.pull_fixtures import KiB, REPO, hub, make_app, make_gguf, models_dir, wait_until  # noqa: F401

EVENTS = 4
ANSWER = "".join(f"tok{i} " for i in range(EVENTS))
KEY = "proxy-key-for-ollama-tests"
FILENAME = "tiny.Q4_K_M.gguf"
MODEL_ID = "tiny.Q4_K_M"


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[str]:
    """tests/fakes/backend.py under gunicorn, each stream EVENTS tokens 10 ms apart."""
    log = tmp_path_factory.mktemp("fake-backend") / "backend.log"
    with fake_backend_process(log, FAKE_BACKEND_EVENTS=str(EVENTS), FAKE_BACKEND_INTERVAL_S="0.01") as (url, _):
        yield url


@pytest.fixture
def proxy(hub, make_app, make_gguf, backend):  # noqa: F811
    """A proxy on the fake backend with acme/tiny-GGUF published on the fake Hub (not yet pulled)."""
    source = make_gguf(FILENAME, 96 * KiB)
    hub.add_repo(REPO, files={FILENAME: source})
    app = make_app(backend_url=backend, api_key=KEY)
    with serving(app) as url:
        yield {"url": url, "source": source, "app": app,
               "client": ollama.Client(host=url, headers={"Authorization": f"Bearer {KEY}"})}


@pytest.fixture
def pulled(proxy):
    for _ in proxy["client"].pull(f"hf.co/{REPO}:Q4_K_M", stream=True):
        pass
    return proxy


def backend_saw(backend_url: str, path: str) -> dict:
    """The last body the fake backend received on `path`."""
    bodies = [r["body"] for r in requests.get(backend_url + "/_requests", timeout=5).json()["requests"]
              if r["path"] == path]
    assert bodies, f"the backend received nothing on {path}"
    return bodies[-1]


def test_pull_streams_ollamas_progress_lines_and_lists_the_model(proxy):
    lines = [dict(line) for line in proxy["client"].pull(f"hf.co/{REPO}:Q4_K_M", stream=True)]
    statuses = [line["status"] for line in lines]
    digest = sha256_file(proxy["source"])
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest",
                                                                   "success"]
    progress = [line for line in lines if line["status"] == f"pulling {digest[:12]}"]
    assert progress and progress[-1]["digest"] == f"sha256:{digest}"
    assert progress[-1]["completed"] == progress[-1]["total"] == 96 * KiB

    again = [line["status"] for line in proxy["client"].pull(f"hf.co/{REPO}:Q4_K_M", stream=True)]
    assert again == ["pulling manifest", f"pulling {digest[:12]}", "verifying sha256 digest", "writing manifest",
                     "success"], "a cached pull says what Ollama says for layers it has"

    listed = proxy["client"].list().models
    assert [m.model for m in listed] == [f"hf.co/{REPO}:Q4_K_M"]
    entry = listed[0]
    assert (entry.size, entry.digest, entry.details.format) == (96 * KiB, digest, "gguf")
    assert entry.modified_at is not None


def test_pull_refusals_are_ollama_errors_with_our_statuses(proxy):
    without_key = ollama.Client(host=proxy["url"])
    with pytest.raises(ollama.ResponseError) as refused:
        without_key.pull(f"hf.co/{REPO}", stream=False)
    assert refused.value.status_code == 401 and "PROXY_API_KEY" in refused.value.error
    with pytest.raises(ollama.ResponseError) as missing:
        proxy["client"].pull("hf.co/acme/nothing-here-GGUF", stream=False)
    assert missing.value.status_code == 404
    assert proxy["client"].pull(f"hf.co/{REPO}", stream=False).status == "success"


def test_chat_maps_options_format_and_keep_alive_and_answers_in_ollamas_shape(pulled, backend):
    answer = pulled["client"].chat(
        model=f"hf.co/{REPO}:Q4_K_M", messages=[{"role": "user", "content": "hi"}], format="json", keep_alive="10m",
        options={"temperature": 0.2, "num_predict": 7, "top_k": 5, "seed": 3, "stop": ["\n"], "num_ctx": 512})
    assert answer.message.role == "assistant" and answer.message.content == ANSWER
    assert answer.done and answer.done_reason == "stop" and answer.eval_count == EVENTS
    assert answer.model == f"hf.co/{REPO}:Q4_K_M" and answer.total_duration > 0
    sent = backend_saw(backend, "/v1/chat/completions")
    assert sent == {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2,
                    "max_tokens": 7, "top_k": 5, "seed": 3, "stop": ["\n"],
                    "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1, "repeat_last_n": 64,  # Ollama's defaults
                    "response_format": {"type": "json_object"}, "keep_alive": "10m",
                    "n_ctx": 512, "truncate": True, "stream": False}  # num_ctx, and Ollama's truncation


def test_chat_streams_ndjson_ending_with_the_metrics_line(pulled):
    parts = list(pulled["client"].chat(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(p.message.content for p in parts) == ANSWER
    assert [p.done for p in parts] == [False] * EVENTS + [True]
    last = parts[-1]
    assert last.done_reason == "stop" and last.eval_count == EVENTS
    assert last.total_duration >= last.prompt_eval_duration > 0 and last.eval_duration > 0


def test_generate_streamed_and_not_and_raw_goes_to_completions(pulled, backend):
    client = pulled["client"]
    whole = client.generate(model=f"hf.co/{REPO}", prompt="The sky is", system="Be brief")
    assert whole.response == ANSWER and whole.done
    assert backend_saw(backend, "/v1/chat/completions")["messages"] == [
        {"role": "system", "content": "Be brief"}, {"role": "user", "content": "The sky is"}]
    streamed = list(client.generate(model=MODEL_ID, prompt="The sky is", stream=True))
    assert "".join(p.response for p in streamed) == ANSWER and streamed[-1].done
    raw = client.generate(model=MODEL_ID, prompt="The sky is", raw=True, format={"type": "object"})
    assert raw.response == ANSWER and raw.done_reason == "length"
    sent = backend_saw(backend, "/v1/completions")
    assert sent["prompt"] == "The sky is" and sent["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_unsupported_inputs_and_unknown_models_are_ollama_errors(pulled):
    client = pulled["client"]
    cases = [
        (lambda: client.chat(model=MODEL_ID, messages=[{"role": "user", "content": "hi", "images": ["aGk="]}]), 400),
        (lambda: client.chat(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}],
                             tools=[{"type": "function", "function": {"name": "f"}}]), 400),
        (lambda: client.generate(model="gemma3:270m", prompt="hi"), 404),
        (lambda: client.show("nothing:here"), 404),
    ]
    for call, status in cases:
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == status, refused.value.error
    for path, body in (("/api/chat", b"{not json"), ("/api/embed", b'{"model": "tiny", "input": [1, 2]}')):
        answer = requests.post(pulled["url"] + path, data=body, timeout=5)
        assert answer.status_code == 400 and set(answer.json()) == {"error"}, answer.text


def test_embed_normalizes_as_ollama_and_embeddings_does_not(pulled, backend):
    client = pulled["client"]
    answer = client.embed(model=MODEL_ID, input=["alpha", "beta"], keep_alive=0)
    assert len(answer.embeddings) == 2 and answer.embeddings[0] != answer.embeddings[1]
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in answer.embeddings)
    assert backend_saw(backend, "/v1/embeddings") == {"model": MODEL_ID, "input": ["alpha", "beta"], "keep_alive": 0}
    cut = client.embed(model=MODEL_ID, input="alpha", dimensions=3).embeddings[0]
    assert len(cut) == 3 and math.isclose(sum(x * x for x in cut), 1.0)
    legacy = client.embeddings(model=MODEL_ID, prompt="alpha").embedding
    assert len(legacy) == 8 and not math.isclose(sum(x * x for x in legacy), 1.0)


def test_generate_without_prompt_loads_and_ps_lists_then_keep_alive_0_unloads(pulled):
    client = pulled["client"]
    loaded = client.generate(model=MODEL_ID, keep_alive=-1)
    assert loaded.done and loaded.done_reason == "load"
    running = [m for m in client.ps().models if m.model == f"hf.co/{REPO}:Q4_K_M"]
    assert running and running[0].size > 0 and running[0].expires_at is None
    assert running[0].details.format == "gguf"
    unloaded = client.chat(model=MODEL_ID, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert not [m for m in client.ps().models if m.model == f"hf.co/{REPO}:Q4_K_M"]


def test_show_and_delete(pulled, models_dir):  # noqa: F811
    client = pulled["client"]
    shown = client.show(f"hf.co/{REPO}:Q4_K_M")
    assert shown.details.format == "gguf" and "completion" in shown.capabilities
    assert FILENAME in shown.modelfile and isinstance(shown.modelinfo, dict)
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=pulled["url"]).delete(f"hf.co/{REPO}:Q4_K_M")
    assert refused.value.status_code == 401
    assert client.delete(f"hf.co/{REPO}:Q4_K_M").status == "success"
    assert not (models_dir / FILENAME).exists() and client.list().models == []
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete(f"hf.co/{REPO}:Q4_K_M")
    assert gone.value.status_code == 404


def test_version_answers(proxy):
    answer = requests.get(proxy["url"] + "/api/version", timeout=5)
    assert answer.status_code == 200 and isinstance(answer.json()["version"], str)


def test_residency_routes_name_models_as_pulled_and_are_guarded(pulled):
    url, auth = pulled["url"], {"Authorization": f"Bearer {KEY}"}
    assert requests.post(url + "/v1/api/load", json={"model": MODEL_ID}, timeout=5).status_code == 401
    loaded = requests.post(url + "/v1/api/load", json={"model": f"{REPO}:Q4_K_M", "keep_alive": "1h"},
                           headers=auth, timeout=5)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json() | {"size_in_memory": 1} == {"model": f"{REPO}:Q4_K_M", "id": MODEL_ID, "status": "loaded",
                                                     "size_in_memory": 1}
    running = requests.get(url + "/v1/api/running", timeout=5).json()["models"]
    entry = next(m for m in running if m["id"] == MODEL_ID)
    assert entry["model"] == f"{REPO}:Q4_K_M" and {"size_in_memory", "gpu_layers", "slots", "expires_at"} <= set(entry)
    too_big = requests.post(url + "/v1/api/load", json={"model": "too-big-model"}, headers=auth, timeout=5)
    assert too_big.status_code == 507 and too_big.json()["code"] == "model_too_large"
    unloaded = requests.post(url + "/v1/api/unload", json={"model": MODEL_ID}, headers=auth, timeout=5)
    assert unloaded.json()["status"] == "unloaded"
    bad = requests.post(url + "/v1/api/load", json={"model": 3}, headers=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_openai_embeddings_through_the_proxy(pulled, backend):
    import openai

    client = openai.OpenAI(base_url=pulled["url"] + "/v1", api_key="unused")
    answer = client.embeddings.create(model=f"{REPO}:Q4_K_M", input=["alpha", "beta"])
    assert [item.index for item in answer.data] == [0, 1] and len(answer.data[0].embedding) == 8
    assert backend_saw(backend, "/v1/embeddings")["model"] == MODEL_ID
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="acme/unknown-GGUF", input="alpha")
    assert missing.value.body["code"] == "model_not_found"
    assert json.dumps(missing.value.body)  # OpenAI's shape, which the SDK parsed


def test_an_ollama_model_from_a_registry_pulls_lists_and_chats_under_ollamas_name(hub, make_app, make_gguf, backend,
                                                                                   tmp_path):  # noqa: F811
    from scripts.registry import DOCKER_MANIFEST, OLLAMA_MODEL
    from tests.registry import running_registry

    source = make_gguf("gemma-like.gguf", 64 * KiB)
    with running_registry(tmp_path / "registry") as registry:
        registry.publish("library/gemma3", "270m", [(source, OLLAMA_MODEL, None)], DOCKER_MANIFEST,
                         "application/vnd.docker.container.image.v1+json")
        app = make_app(backend_url=backend, insecure_registries=(registry.host,),
                       docker_config=str(tmp_path / "no-docker"))
        with serving(app) as url:
            client, name = ollama.Client(host=url), f"{registry.host}/library/gemma3:270m"
            statuses = [line.status for line in client.pull(name, stream=True)]
            assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
            assert [m.model for m in client.list().models] == [name]
            for asked in (name, f"ollama://{name}"):
                assert client.chat(model=asked, messages=[{"role": "user", "content": "hi"}]).message.content == ANSWER
            assert backend_saw(backend, "/v1/chat/completions")["model"] == "gemma3-270m"


def test_ollama_names_resolve_to_what_was_pulled(models_dir, make_gguf):  # noqa: F811
    import dataclasses
    import shutil

    from core import naming
    from proxy.ollama.names import ollama_name, pulled_as, resolve_ollama_name
    from proxy.models_dir.provenance import Provenance
    from proxy.models_dir.store import ModelStore

    store = ModelStore(models_dir)
    store.ensure_dirs()
    base = Provenance(filename="", repo="", repo_path="", revision="main", commit="c", size=0, sha256=None,
                      source_host="h", pulled_at="2026-01-01T00:00:00+00:00")
    records = [
        dataclasses.replace(base, filename="gemma3-270m.gguf", repo="ollama://registry.ollama.ai/library/gemma3:270m",
                            source="ollama://registry.ollama.ai/library/gemma3:270m"),
        dataclasses.replace(base, filename="phi-3.Q8_0.gguf", repo="acme/phi-3-GGUF"),
    ]
    for record in records:
        shutil.copy(make_gguf(record.filename), store.final_path(record.filename))
        store.provenance.put(record)
    shutil.copy(make_gguf("hand-made.gguf"), store.final_path("hand-made.gguf"))
    cases = {"gemma3:270m": "gemma3-270m", "library/gemma3:270m": "gemma3-270m",
             "registry.ollama.ai/library/gemma3:270m": "gemma3-270m", "gemma3-270m": "gemma3-270m",
             "hf.co/acme/phi-3-GGUF:Q8_0": "phi-3.Q8_0", "hf.co/acme/phi-3-GGUF:latest": "phi-3.Q8_0",
             "huggingface.co/acme/phi-3-GGUF": "phi-3.Q8_0", "acme/phi-3-GGUF:Q8_0": "phi-3.Q8_0",
             "phi-3": "phi-3.Q8_0", "hand-made": "hand-made"}
    for name, model in cases.items():
        assert resolve_ollama_name(store, name)[0] == model, name
    for name in ("gemma3:1b", "hf.co/acme/phi-3-GGUF:Q4_K_M", "other", "  "):
        with pytest.raises(ProxyError) as refused:
            resolve_ollama_name(store, name)
        assert refused.value.code in ("model_not_found", "invalid_request"), name
    entries = {e["filename"]: e for e in store.describe_installed()}
    assert [ollama_name(entries[f]) for f in sorted(entries)] == ["gemma3:270m", "hand-made",
                                                                  "hf.co/acme/phi-3-GGUF:Q8_0"]
    assert [pulled_as(entries[f]) for f in sorted(entries)] == [
        "ollama://registry.ollama.ai/library/gemma3:270m", "hand-made", "acme/phi-3-GGUF:Q8_0"]
    assert all(resolve_ollama_name(store, ollama_name(e))[0] == naming.model_id(e["filename"])
               for e in entries.values()), "every listed name resolves to its model"


def backend_running(backend_url: str) -> dict:
    return {m["id"]: m for m in requests.get(backend_url + "/api/running", timeout=5).json()["models"]}


def test_a_keep_loaded_entry_is_loaded_forever_and_ready_only_once_loaded(hub, make_app, make_gguf, backend,
                                                                          tmp_path):  # noqa: F811
    hub.add_repo("acme/kept-GGUF", files={"kept.Q4_K_M.gguf": make_gguf("kept.Q4_K_M.gguf")})
    hub.add_repo("acme/huge-GGUF", files={"too-big.Q4_K_M.gguf": make_gguf("too-big.Q4_K_M.gguf")})
    manifest = tmp_path / "models.yaml"
    manifest.write_text("models:\n  - model: acme/kept-GGUF\n    keep_loaded: true\n"
                        "  - model: acme/huge-GGUF\n    keep_loaded: true\n")
    client = make_app(models_manifest=str(manifest), backend_url=backend, manifest_poll_interval_s=0.2).test_client()
    states = wait_until(lambda: (lambda m: m if all(e["state"] in ("ready", "failed") for e in m) else None)(
        client.get("/v1/api/manifest").json["models"]), timeout_s=15, what="both entries settled")
    assert [(e["state"], e["code"]) for e in states] == [("ready", None), ("failed", "model_too_large")]
    kept = backend_running(backend)["kept.Q4_K_M"]
    assert kept["expires_at"] is None, "loaded with keep_alive -1: never unloaded for idleness"
    assert client.get("/readyz").status_code == 503, "an entry that cannot be loaded is not ready"

    # The backend lost the model (restarted, unloaded by hand): the next poll loads it again.
    requests.post(backend + "/api/unload", json={"model": "kept.Q4_K_M"}, timeout=5)
    wait_until(lambda: "kept.Q4_K_M" in backend_running(backend), timeout_s=15, what="the kept model loaded again")


def test_keep_loaded_must_be_a_boolean(make_app, tmp_path):
    from proxy.declared.manifest import ManifestError

    manifest = tmp_path / "models.yaml"
    manifest.write_text("models:\n  - model: acme/kept-GGUF\n    keep_loaded: 'yes'\n")
    with pytest.raises(ManifestError, match=r"models\[0\]\.keep_loaded: expected true or false"):
        make_app(models_manifest=str(manifest))
