"""What the `openai` SDK shows against a proxy process for what the proxy lacks: an unknown route under /v1/ is
an OpenAI-shaped 404, and a field the backend does not implement (`n: 2`, `logprobs`, `functions`, ...) a 400
`invalid_request` naming it, instead of being ignored."""
from __future__ import annotations

import openai
import pytest
import requests

from scripts import stack
from tests.helpers import free_port

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory):
    """A real gunicorn proxy; its backend is a closed port (every refusal here comes before the backend)."""
    folder = tmp_path_factory.mktemp("openai-edges")
    no_backend, no_hub = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    with stack.proxy(folder / "models", folder, no_hub, no_backend) as (url, _):
        yield url


@pytest.fixture(scope="module")
def sdk(proxy_url):
    return openai.OpenAI(base_url=proxy_url + "/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.mark.parametrize("method, path", [("POST", "/v1/foo"), ("GET", "/v1/fine_tuning/jobs"),
                                          ("POST", "/v1/audio/speech"), ("GET", "/v1/chat")])
def test_an_unknown_route_under_v1_answers_in_openai_shape(proxy_url, method, path):
    answer = requests.request(method, proxy_url + path, json={}, timeout=10)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("not_found_error", "not_found") and error["message"], answer.text


def test_the_sdk_shows_the_reason_for_an_endpoint_the_proxy_lacks(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.fine_tuning.jobs.list()
    assert caught.value.code == "not_found" and "not found" in str(caught.value).lower()


@pytest.mark.parametrize("path", ["/v1/api/nothing", "/v1/api/pulls/nope", "/nothing"])
def test_our_own_routes_keep_our_error_shape(proxy_url, path):
    answer = requests.get(proxy_url + path, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["status"] == "error" and answer.json()["code"] == "not_found", answer.text


@pytest.mark.parametrize("extra, field", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
])
def test_unsupported_chat_fields_are_refused_naming_the_field(sdk, extra, field):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="any", messages=MESSAGES, max_tokens=4, **extra)
    assert caught.value.code == "invalid_request"
    assert f"unsupported field '{field}'" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("extra, field", [
    ({"n": 3}, "n"), ({"best_of": 2}, "best_of"), ({"echo": True}, "echo"),
    ({"logprobs": 2}, "logprobs"),
])
def test_unsupported_completion_fields_are_refused_naming_the_field(sdk, extra, field):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(model="any", prompt="x", max_tokens=4, **extra)
    assert caught.value.code == "invalid_request" and f"unsupported field '{field}'" in str(caught.value)


@pytest.mark.parametrize("extra", [{"n": 1}, {"logprobs": False}, {"tool_choice": "none"}, {"tools": []},
                                   {"best_of": 1}, {"echo": False}, {"suffix": None}, {"n": "2"}])
def test_harmless_values_of_those_fields_pass_on_to_the_model(proxy_url, extra):
    body = {"model": "not-installed", "messages": MESSAGES, "max_tokens": 4, **extra}
    answer = requests.post(proxy_url + "/v1/chat/completions", json=body, timeout=10)
    assert answer.json()["error"]["code"] != "invalid_request", answer.text  # refused later, for the model


def test_the_shimmy_generate_route_is_not_judged_by_openai_rules(proxy_url):
    body = {"model": "not-installed", "prompt": "x", "n": 2, "max_tokens": 4}
    answer = requests.post(proxy_url + "/v1/generate", json=body, timeout=10)
    assert answer.json().get("code") != "invalid_request", answer.text
