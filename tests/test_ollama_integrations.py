"""Ollama's integrations as their users call them, against the proxy under gunicorn, the real backend and the real
Gemma 3 270M (a base model without a chat template: the backend formats it as Gemma's family does): the `ollama`
client with num_ctx, LangChain (langchain-ollama), LlamaIndex (llama-index-llms-ollama), LiteLLM, and the calls
Open WebUI and Continue make, replayed as their sources make them. Answers are a base model's prose: the tests
check what the server did (contexts, counts, shapes, parsed JSON), not the words."""
from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime

import ollama
import pytest
import requests

from server.chat.shown import GEMMA
from tests.fim_gguf import write_fim_copy
from tests.gemma_models import gemma_folder
from tests.helpers import REPO_ROOT, stack_dirs, wait_until

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

KEY = "integrations-key"
MODEL = "gemma-3-270m-Q4_K_M"  # the model id of a file nobody pulled: its Ollama name too
FIM_MODEL = "gemma-fim-Q4_K_M"  # Gemma with FIM token ids in its metadata (tests/fim_gguf.py)
FEW = {"temperature": 0, "num_predict": 4}
TRAINED_CTX = 32768  # gemma3.context_length in the GGUF
DEFAULT_CTX = 4096  # N_CTX unset: the trained context capped at 4096
# Continue's parser of /api/show's parameters (core/llm/llms/Ollama.ts): a line it cannot match stops it.
CONTINUE_PARAMETER = re.compile(r'^(\S+)\s+((?:".*")|\S+)$')


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    models, logs = stack_dirs(tmp_path_factory.mktemp("ollama-integrations"))
    gemma_folder(gemma_gguf, models)
    write_fim_copy(gemma_gguf, models / f"{FIM_MODEL}.gguf")  # only shown, never loaded
    with backend(models, logs) as backend_url, \
            proxy(models, logs, "http://127.0.0.1:9", backend_url, {"PROXY_API_KEY": KEY}) as (url, _):
        yield {"url": url, "client": ollama.Client(host=url, timeout=300)}


def _ps(url: str) -> dict:
    return {m["name"]: m for m in requests.get(f"{url}/api/ps", timeout=30).json()["models"]}


def test_show_tells_the_template_used_the_parameters_and_the_contexts(stack):
    shown = stack["client"].show(MODEL)

    assert shown.template == GEMMA  # no template in the GGUF: the family format the backend renders with
    lines = shown.parameters.splitlines()
    assert all(CONTINUE_PARAMETER.match(line) for line in lines), lines
    values = [CONTINUE_PARAMETER.match(line).groups() for line in lines]
    assert ("stop", json.dumps("<end_of_turn>\n")) in values
    assert dict(values)["num_ctx"] in (str(DEFAULT_CTX), "1024")  # loaded at 1024 when another test ran first
    assert shown.modelinfo["gemma3.context_length"] == TRAINED_CTX
    assert shown.capabilities == ["completion"]  # no tools or thinking in the template, no FIM tokens


def test_show_of_a_model_with_fim_tokens_says_insert_and_shows_the_fim_prompt_continue_looks_for(stack):
    shown = stack["client"].show(FIM_MODEL)

    assert shown.capabilities == ["completion", "insert"]
    assert shown.template.startswith("{{- if .Suffix }}<unused0>{{ .Prompt }}<unused1>{{ .Suffix }}<unused2>")
    assert shown.template.endswith(GEMMA + "{{- end }}")


def test_num_ctx_loads_the_model_with_that_context_and_ps_says_so(stack):
    client = stack["client"]
    answer = client.generate(model=MODEL, prompt="Hi", options={**FEW, "num_ctx": 1024})

    assert answer.done and answer.eval_count <= 4
    assert _ps(stack["url"])[MODEL]["context_length"] == 1024
    shown = {k: v for k, v in (CONTINUE_PARAMETER.match(line).groups() for line in
                                client.show(MODEL).parameters.splitlines())}
    assert shown["num_ctx"] == "1024"


def test_a_history_longer_than_the_context_loses_its_oldest_messages_unless_truncate_is_false(stack):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Message {i}: " + "word " * 60}
             for i in range(20)]  # about 1,300 tokens
    messages = [{"role": "system", "content": "Be brief."}, *turns, {"role": "user", "content": "Last one?"}]
    body = {"model": MODEL, "messages": messages, "stream": False, "options": {**FEW, "num_ctx": 512}}

    answer = requests.post(f"{stack['url']}/api/chat", json=body, timeout=300)
    refused = requests.post(f"{stack['url']}/api/chat", json={**body, "truncate": False}, timeout=300)

    assert answer.status_code == 200, answer.text
    assert 50 < answer.json()["prompt_eval_count"] <= 512 - 4  # cut to fit, room left for the answer
    assert refused.status_code == 400 and "context" in refused.json()["error"]


def test_unknown_api_paths_answer_in_ollamas_error_shape(stack):
    answer = requests.post(f"{stack['url']}/api/nothing-here", json={}, timeout=30)

    assert answer.status_code == 404 and set(answer.json()) == {"error"}


def test_basic_auth_with_the_key_as_password_is_the_key(stack):
    url = stack["url"]
    body = {"model": "no-such-model"}
    with_key = requests.delete(f"{url}/api/delete", json=body, auth=("anyone", KEY), timeout=30)
    wrong = requests.delete(f"{url}/api/delete", json=body, auth=("anyone", "not-the-key"), timeout=30)

    assert with_key.status_code == 404 and "not found" in with_key.json()["error"]  # past the key
    assert wrong.status_code == 401


def test_langchain_invokes_streams_and_answers_by_json_schema_with_basic_auth_from_the_base_url(stack):
    from langchain_ollama import ChatOllama

    host = stack["url"].removeprefix("http://")
    base_url = f"http://user:{KEY}@{host}"
    chat = ChatOllama(model=MODEL, base_url=base_url, temperature=0, num_predict=4)
    schema = {"title": "flag", "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    answer = chat.invoke("Say hi")
    pieces = list(chat.stream("Say hi"))
    longer = ChatOllama(model=MODEL, base_url=base_url, temperature=0, num_predict=48)
    structured = longer.with_structured_output(schema, method="json_schema").invoke("Is it ok?")
    # keep_alive 0 unloads the model after the call, which PROXY_API_KEY guards: it passes only because the key
    # reaches the proxy as Basic auth from the base URL, as langchain-ollama sends it.
    unloading = ChatOllama(model=MODEL, base_url=base_url, num_predict=1, keep_alive=0).invoke("Hi")

    assert answer.usage_metadata["output_tokens"] <= 4
    assert answer.response_metadata["done_reason"] in ("stop", "length")
    assert sum(bool(p.response_metadata.get("done")) for p in pieces) == 1  # one final chunk with the counts
    assert isinstance(structured, dict) and isinstance(structured["ok"], bool)  # valid by the schema's grammar
    assert unloading.response_metadata["done"]
    wait_until(lambda: MODEL not in _ps(stack["url"]), 30, "the model unloaded by keep_alive 0")
    keyless = ChatOllama(model=MODEL, base_url=stack["url"], num_predict=1, keep_alive=0)
    with pytest.raises(ollama.ResponseError) as refused:
        keyless.invoke("Say hi")
    assert refused.value.status_code == 401


def test_llama_index_completes_and_chats(stack):
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    llm = Ollama(model=MODEL, base_url=stack["url"], temperature=0, request_timeout=300, context_window=1024,
                 additional_kwargs={"num_predict": 4})

    completed = llm.complete("The sky is")
    chatted = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")])

    assert completed.raw["done"] and completed.raw["eval_count"] <= 4
    assert chatted.message.role == "assistant" and chatted.raw["eval_count"] <= 4
    assert _ps(stack["url"])[MODEL]["context_length"] == 1024  # LlamaIndex sends num_ctx: honoured


@pytest.mark.parametrize("provider", ["ollama", "ollama_chat"])
def test_litellm_completes_through_generate_and_chat(stack, provider):
    import litellm
    from litellm.llms.ollama.common_utils import OllamaModelInfo

    answer = litellm.completion(model=f"{provider}/{MODEL}", api_base=stack["url"], max_tokens=4, temperature=0,
                                messages=[{"role": "user", "content": "Say hi"}])

    assert answer.choices[0].finish_reason in ("stop", "length") and 0 < answer.usage.completion_tokens <= 4
    assert answer.usage.prompt_tokens > 0
    # What LiteLLM's router reads from /api/show: the trained context, and tools from the template.
    info = OllamaModelInfo().get_runtime_model_info(f"{provider}/{MODEL}", api_base=stack["url"])
    assert info["max_input_tokens"] == TRAINED_CTX and info["supports_function_calling"] is False


def _ndjson(response: requests.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.iter_lines() if line]


def test_open_webuis_call_sequence(stack):
    """Open WebUI's backend (open_webui/routers/ollama.py), replayed: verify_connection's GET /api/version (its
    version parsed as `re.sub(r"^v|-.*", "", v)` into ints), get_all_models' GET /api/tags merged with
    GET /api/ps by `name` (ps' `expires_at` read by datetime.fromisoformat), a streamed POST /api/chat, and
    unload_model's POST /api/generate {"model", "keep_alive": 0, "prompt": ""} with the connection's key."""
    url, key = stack["url"], {"Authorization": f"Bearer {KEY}"}
    version = requests.get(f"{url}/api/version", headers=key, timeout=30).json()["version"]
    assert tuple(map(int, re.sub(r"^v|-.*", "", version).split(".")))
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "options": FEW}
    lines = _ndjson(requests.post(f"{url}/api/chat", json=chat, headers=key, stream=True, timeout=300))

    tags = requests.get(f"{url}/api/tags", headers=key, timeout=30).json()["models"]
    expires = {m["name"]: m["expires_at"] for m in requests.get(f"{url}/api/ps", headers=key, timeout=30).json()
               ["models"] if "expires_at" in m}
    merged = {m["name"]: datetime.fromisoformat(expires[m["name"]]).timestamp() for m in tags if m["name"] in expires}
    unload = requests.post(f"{url}/api/generate", json={"model": MODEL, "keep_alive": 0, "prompt": ""}, headers=key,
                           timeout=300)

    assert lines[-1]["done"] and all(not line["done"] for line in lines[:-1])
    assert merged[MODEL] > time.time()  # loaded by the chat, expiring later
    assert unload.status_code == 200 and unload.json()["done_reason"] == "unload"
    wait_until(lambda: MODEL not in _ps(url), 30, "the model unloaded")  # once the stream's hold is let go


def test_continues_call_sequence(stack):
    """Continue's Ollama provider (core/llm/llms/Ollama.ts), replayed: POST /api/show {"name"} whose `parameters`
    lines it parses with /^(\\S+)\\s+((?:".*")|\\S+)$/ (num_ctx into its context length, each stop JSON-parsed) and
    whose template it searches for ".Suffix" (fill-in-the-middle); then POST /api/chat and, for autocomplete,
    POST /api/generate with `raw`, both streamed with its options (num_ctx from show) and keep_alive 1800."""
    url = stack["url"]
    shown = requests.post(f"{url}/api/show", json={"name": MODEL}, timeout=60).json()
    parsed = [CONTINUE_PARAMETER.match(line).groups() for line in shown["parameters"].split("\n")]
    context_length = int(dict(parsed)["num_ctx"])
    stops = [json.loads(value) for key, value in parsed if key == "stop"]
    options = {"temperature": 0, "num_predict": 4, "stop": stops, "num_ctx": context_length}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "options": options,
            "keep_alive": 1800, "stream": True}
    chatted = _ndjson(requests.post(f"{url}/api/chat", json=chat, stream=True, timeout=300))
    raw = {"model": MODEL, "prompt": "def add(a, b):\n    return", "raw": True, "options": options,
           "keep_alive": 1800, "stream": True}
    completed = _ndjson(requests.post(f"{url}/api/generate", json=raw, stream=True, timeout=300))

    assert ".Suffix" not in shown["template"]  # Gemma has no FIM tokens: Continue offers no autocomplete by FIM
    assert stops == ["<end_of_turn>\n"] and context_length in (DEFAULT_CTX, 1024)
    assert chatted[-1]["done"] and chatted[-1]["eval_count"] <= 4
    assert completed[-1]["done"] and completed[-1]["prompt_eval_count"] > 0
    assert _ps(url)[MODEL]["context_length"] == context_length
