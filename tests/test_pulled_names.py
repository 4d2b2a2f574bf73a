"""Generating with the name a model was pulled as: the rule (proxy.pulls.pulled_names) and the proxy rewriting the
forwarded body's `model` to the id the backend knows. The real Gemma through processes: test_pulled_names_gemma.py.
"""
from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from core import naming
from proxy.errors import ProxyError
from proxy.pulls.pulled_names import resolve_pulled_name
from tests.pull_fixtures import REPO, pull

GEMMA = "google/gemma-3-270m-GGUF"


def entry(filename: str, repo: str | None = GEMMA, **extra) -> dict:
    """One model as ModelStore.describe_installed lists it."""
    return {"id": naming.model_id(filename), "filename": filename, "repo": repo, **extra}


INSTALLED = [
    entry("gemma-3-270m-Q4_K_M.gguf"),
    entry("gemma-3-270m-Q8_0.gguf"),
    entry("phi-3-mini.Q4_K_M.gguf", repo="microsoft/Phi-3-mini-GGUF"),
    entry("big-Q4_K_M-00001-of-00002.gguf", repo="acme/big-GGUF"),
    entry("big-Q4_K_M-00002-of-00002.gguf", repo="acme/big-GGUF"),
    entry("gemma3-270m.gguf", repo=None, source="ollama://registry.ollama.ai/library/gemma3:270m"),
    entry("by-hand.gguf", repo=None),
]


@pytest.mark.parametrize("name, model_id", [
    ("google/gemma-3-270m-GGUF:Q4_K_M", "gemma-3-270m-Q4_K_M"),
    ("google/gemma-3-270m-GGUF:q8_0", "gemma-3-270m-Q8_0"),
    ("Google/Gemma-3-270m-gguf:Q8_0", "gemma-3-270m-Q8_0"),
    ("hf.co/google/gemma-3-270m-GGUF:Q4_K_M", "gemma-3-270m-Q4_K_M"),
    ("hf://google/gemma-3-270m-GGUF:Q8_0", "gemma-3-270m-Q8_0"),
    ("microsoft/Phi-3-mini-GGUF", "phi-3-mini.Q4_K_M"),
    ("hf.co/microsoft/Phi-3-mini-GGUF", "phi-3-mini.Q4_K_M"),
    ("acme/big-GGUF", "big-Q4_K_M"),
    ("acme/big-GGUF:Q4_K_M", "big-Q4_K_M"),
    ("ollama://registry.ollama.ai/library/gemma3:270m", "gemma3-270m"),
])
def test_a_pulled_name_resolves_to_the_installed_model_id(name, model_id):
    assert resolve_pulled_name(INSTALLED, name) == model_id


def test_a_repo_with_several_installed_models_and_no_quant_lists_them():
    with pytest.raises(ProxyError) as caught:
        resolve_pulled_name(INSTALLED, "hf.co/google/gemma-3-270m-GGUF")

    assert caught.value.code == "model_not_found" and caught.value.status == 404
    assert "ambiguous" in caught.value.message
    assert ("gemma-3-270m-Q4_K_M (google/gemma-3-270m-GGUF:Q4_K_M), "
            "gemma-3-270m-Q8_0 (google/gemma-3-270m-GGUF:Q8_0)") in caught.value.message


def test_a_quant_not_installed_says_the_pull_and_what_the_repo_has_installed():
    with pytest.raises(ProxyError) as caught:
        resolve_pulled_name(INSTALLED, "hf.co/google/gemma-3-270m-GGUF:f16")

    assert caught.value.code == "model_not_found"
    assert 'pull it first: POST /v1/api/pull {"model": "google/gemma-3-270m-GGUF:F16"}' in caught.value.message
    assert "gemma-3-270m-Q4_K_M (google/gemma-3-270m-GGUF:Q4_K_M)" in caught.value.message


@pytest.mark.parametrize("name, pull_body", [
    ("acme/none-GGUF:Q4_K_M", '{"model": "acme/none-GGUF:Q4_K_M"}'),
    ("hf://acme/none-GGUF", '{"model": "acme/none-GGUF"}'),
    ("ollama://registry.ollama.ai/library/qwen3:0.6b", '{"model": "ollama://registry.ollama.ai/library/qwen3:0.6b"}'),
])
def test_an_unknown_pulled_name_says_the_exact_pull_to_make(name, pull_body):
    with pytest.raises(ProxyError) as caught:
        resolve_pulled_name(INSTALLED, name)

    assert caught.value.code == "model_not_found"
    assert f"model {name!r} is not installed; pull it first: POST /v1/api/pull {pull_body}" in caught.value.message


# --- through the proxy app, in front of a backend that echoes what it was sent ---------------------------


@contextlib.contextmanager
def echo_backend() -> Iterator[tuple[str, list[bytes]]]:
    """A backend answering every POST with `{"model": <the model it was sent>}`; yields its URL and the bodies."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            bodies.append(body)
            answer = json.dumps({"model": json.loads(body).get("model")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(hub, make_app, make_gguf):
    """A proxy with tiny-Q4_K_M and tiny-Q8_0 pulled from acme/tiny-GGUF; yields its client and the bodies the
    backend got."""
    hub.add_repo(REPO, files={name: make_gguf(name) for name in ("tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf")})
    with echo_backend() as (url, bodies):
        client = make_app(backend_url=url).test_client()
        for quant in ("Q4_K_M", "Q8_0"):
            assert pull(client, model=f"{REPO}:{quant}")[-1]["status"] == "complete"
        yield client, bodies


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/completions", "/v1/chat/completions"])
def test_forwarded_requests_reach_the_backend_with_the_model_id_of_the_pulled_name(proxied, path):
    client, bodies = proxied
    answer = client.post(path, json={"model": f"hf.co/{REPO}:q8_0", "prompt": "é", "max_tokens": 2})

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert json.loads(bodies[-1]) == {"model": "tiny-Q8_0", "prompt": "é", "max_tokens": 2}


def test_a_body_without_a_pulled_name_reaches_the_backend_byte_for_byte(proxied):
    client, bodies = proxied
    for body in (b'{"model":  "tiny-Q8_0", "prompt": "\\u00e9"}', b'{"prompt": "x", "model": null}'):
        client.post("/v1/completions", data=body, content_type="application/json")
        assert bodies[-1] == body


def test_an_ambiguous_pulled_name_answers_404_in_openai_shape_listing_the_models(proxied):
    client, bodies = proxied
    answer = client.post("/v1/chat/completions", json={"model": REPO, "messages": []})

    assert answer.status_code == 404 and not bodies
    error = answer.json["error"]
    assert error["code"] == "model_not_found" and error["type"] == "not_found_error"
    assert f"tiny-Q4_K_M ({REPO}:Q4_K_M), tiny-Q8_0 ({REPO}:Q8_0)" in error["message"]


def test_a_deleted_model_is_unknown_by_its_pulled_name_at_once(proxied):
    client, bodies = proxied
    assert client.delete("/v1/api/delete", json={"model": "tiny-Q8_0"}).status_code == 200

    gone = client.post("/v1/generate", json={"model": f"{REPO}:Q8_0", "prompt": "x"})
    assert gone.status_code == 404 and gone.json["code"] == "model_not_found"
    assert f'POST /v1/api/pull {{"model": "{REPO}:Q8_0"}}' in gone.json["error"]
    assert client.post("/v1/generate", json={"model": REPO, "prompt": "x"}).json == {"model": "tiny-Q4_K_M"}
