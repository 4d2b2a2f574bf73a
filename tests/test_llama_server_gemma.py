"""llama-server's own endpoints and fill-in-the-middle, end to end: the proxy under gunicorn, the real backend,
the real Gemma 3 270M and a copy of it whose metadata names FIM tokens (<unused0..2>, tests/fim_gguf.py).
Gemma's prose is gibberish: these assert the prompt the server built (its token count, its text) and the
shapes llama-server's clients read, never the words."""
from __future__ import annotations

import json
import sys

import ollama
import openai
import pytest
import requests

from tests.fim_gguf import GEMMA_FIM_IDS, write_fim_copy
from tests.gemma_models import gemma_folder
from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

PLAIN, FIM = "gemma-3-270m-Q4_K_M", "gemma-fim-Q4_K_M"
PRE, SUF, MID = (f"<unused{i}>" for i in range(3))  # the texts of GEMMA_FIM_IDS
BOS = 2
FEW = 3  # tokens to generate: enough to see the shapes


@pytest.fixture(scope="module")
def url(tmp_path_factory, gemma_gguf):
    models, logs = stack_dirs(tmp_path_factory.mktemp("llama-server"))
    gemma_folder(gemma_gguf, models, PLAIN)
    write_fim_copy(gemma_gguf, models / f"{FIM}.gguf")
    env = {"MAX_LOADED_MODELS": "2", "PARALLEL": "2", "N_CTX": "1024"}
    with backend(models, logs, env) as backend_url, proxy(models, logs, "http://127.0.0.1:9", backend_url) as (url, _):
        yield url


def post(url: str, path: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(url + path, json=body, timeout=120, **kwargs)


def count(url: str, text: str, model: str = FIM) -> int:
    """How many tokens `text` is as FIM parts are tokenized: no BOS, special tokens as plain text."""
    return len(post(url, "/tokenize", {"model": model, "content": text, "parse_special": False}).json()["tokens"])


def test_health_answers_as_llama_server(url):
    answer = requests.get(url + "/health", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_tokenize_with_pieces_and_detokenize_round_trip(url):
    text = "Hello world"
    tokens = post(url, "/tokenize", {"model": FIM, "content": text, "add_special": True}).json()["tokens"]
    pieces = post(url, "/tokenize", {"model": FIM, "content": text, "with_pieces": True}).json()["tokens"]

    assert tokens[0] == BOS and [p["id"] for p in pieces] == tokens[1:]
    assert "".join(p["piece"] for p in pieces) == text
    assert post(url, "/detokenize", {"model": FIM, "tokens": tokens}).json() == {"content": "<bos>" + text}
    assert post(url, "/tokenize", {"model": FIM, "content": PRE}).json()["tokens"] == [GEMMA_FIM_IDS["pre"]]


def test_apply_template_renders_the_models_chat_format(url):
    answer = post(url, "/apply-template", {"model": PLAIN, "messages": [{"role": "user", "content": "hi"}]})
    assert "<start_of_turn>user\nhi<end_of_turn>" in answer.json()["prompt"]


def test_completion_answers_in_llama_servers_shape(url):
    prompt = "The sky is"
    answer = post(url, "/completion", {"model": FIM, "prompt": prompt, "n_predict": FEW}).json()

    assert answer["stop"] is True and answer["model"] == FIM and isinstance(answer["content"], str)
    assert answer["tokens_evaluated"] == 1 + count(url, prompt) and answer["prompt"] == "<bos>" + prompt
    assert 0 < answer["tokens_predicted"] <= FEW
    assert answer["stop_type"] == ("limit" if answer["tokens_predicted"] == FEW else "eos")
    assert answer["timings"]["predicted_n"] == answer["tokens_predicted"]
    assert answer["generation_settings"]["n_predict"] == FEW


def test_completion_takes_token_ids_mixed_with_text(url):
    text = post(url, "/completion", {"model": FIM, "prompt": "Hello", "n_predict": 0}).json()
    mixed = post(url, "/completion", {"model": FIM, "prompt": [BOS, "Hello", 6], "n_predict": 0}).json()
    assert text["prompt"] == "<bos>Hello" and mixed["prompt"] == f"<bos>Hello{PRE}"
    assert mixed["tokens_evaluated"] == text["tokens_evaluated"] + 1 and mixed["tokens_predicted"] == 0


def test_completion_streams_as_llama_server_does(url):
    with post(url, "/completion", {"model": FIM, "prompt": "Once upon", "n_predict": FEW, "stream": True},
              stream=True) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in answer.iter_lines(decode_unicode=True) if line]

    assert all(line.startswith("data: {") for line in events)  # JSON events only: no [DONE] at the end
    chunks = [json.loads(line[6:]) for line in events]
    assert [c["stop"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1]["tokens_predicted"] <= FEW and chunks[-1]["content"] == ""
    assert chunks[-1]["tokens_evaluated"] == 1 + count(url, "Once upon")


def test_infill_builds_the_fim_prompt_prefix_suffix_middle(url):
    prefix, suffix, middle = "def add(a, b):\n", "\n\nprint(add(1, 2))\n", "    return"
    answer = post(url, "/infill", {"model": FIM, "input_prefix": prefix, "input_suffix": suffix, "prompt": middle,
                                   "n_predict": FEW, "response_fields": ["prompt", "tokens_evaluated", "content",
                                                                         "timings/prompt_n"]}).json()

    assert answer["prompt"] == f"<bos>{PRE}{prefix}{middle}{SUF}{suffix}{MID}"
    assert answer["tokens_evaluated"] == 4 + count(url, prefix) + count(url, middle) + count(url, suffix)
    assert set(answer) == {"prompt", "tokens_evaluated", "content", "timings/prompt_n"}


def test_infill_puts_extra_files_before_the_prefix(url):
    answer = post(url, "/infill", {"model": FIM, "input_prefix": "x = ", "input_suffix": "", "n_predict": 0,
                                   "input_extra": [{"filename": "util.py", "text": "y = 1\n"}]}).json()
    assert answer["prompt"] == f"\n\n--- snippet ---\n\ny = 1\n<bos>{PRE}x = {SUF}{MID}"  # no FIM_SEP in Gemma


def test_a_model_without_fim_tokens_is_a_400_naming_it(url):
    answer = post(url, "/infill", {"model": PLAIN, "input_prefix": "a", "input_suffix": "b", "n_predict": 1})
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == 400 and error["type"] == "invalid_request_error"
    assert PLAIN in error["message"] and "fill-in-the-middle" in error["message"]


def test_openai_sdk_retrieves_a_model_and_completes_with_a_suffix(url):
    sdk = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert sdk.models.retrieve(FIM).id == FIM
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")

    prompt, suffix = "def square(x):\n    return", "\n\nprint(square(3))\n"
    done = sdk.completions.create(model=FIM, prompt=prompt, suffix=suffix, max_tokens=FEW)
    assert done.usage.prompt_tokens == 4 + count(url, prompt) + count(url, suffix)  # BOS, PRE, SUF, MID
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.completions.create(model=PLAIN, prompt=prompt, suffix=suffix, max_tokens=FEW)
    assert PLAIN in str(refused.value) and refused.value.param == "suffix"


def test_ollama_generate_with_a_suffix_fills_the_middle(url):
    client = ollama.Client(host=url, timeout=120)
    prompt, suffix = "for i in range(", "):\n    print(i)\n"
    done = client.generate(model=FIM, prompt=prompt, suffix=suffix, options={"num_predict": FEW})
    assert done.prompt_eval_count == 4 + count(url, prompt) + count(url, suffix)
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=PLAIN, prompt=prompt, suffix=suffix, options={"num_predict": FEW})
    assert refused.value.status_code == 400 and f"{PLAIN} does not support insert" in refused.value.error


def test_props_and_slots_describe_the_named_model(url):
    props = requests.get(url + "/props", params={"model": FIM}, timeout=60).json()
    slots = requests.get(url + "/slots", params={"model": FIM}, timeout=60).json()

    assert props["total_slots"] == 2 and props["default_generation_settings"]["n_ctx"] == 1024
    assert props["model_path"].endswith(f"{FIM}.gguf")
    assert [s["id"] for s in slots] == [0, 1] and all(s["n_ctx"] == 1024 for s in slots)


def test_without_a_model_named_several_loaded_is_a_400_listing_them(url):
    for model in (PLAIN, FIM):  # both loaded (MAX_LOADED_MODELS 2)
        assert post(url, "/tokenize", {"model": model, "content": "a"}).status_code == 200
    answer = requests.get(url + "/props", timeout=60)
    assert answer.status_code == 400
    assert PLAIN in answer.json()["error"]["message"] and FIM in answer.json()["error"]["message"]
