"""End to end on the real Gemma 3 270M model from a real registry: published Ollama-style and in Docker
Model Runner's layout, pulled through the proxy (gunicorn) with ollama:// and oci://, then served by the
backend."""
from __future__ import annotations

import pytest
import requests

import scripts.stack
from scripts.gguf_files import sha256_file
from tests.gemma_models import pull_lines
from tests.helpers import stack_dirs
from scripts.registry import DMR_GGUF, DOCKER_MANIFEST, OLLAMA_MODEL, TITLE
from tests.registry import running_registry


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    tmp = tmp_path_factory.mktemp("e2e-registry")
    models, logs = stack_dirs(tmp)
    with running_registry(tmp / "registry") as registry:
        registry.publish("library/gemma3", "270m", [(gemma_gguf, OLLAMA_MODEL, None)], DOCKER_MANIFEST,
                         "application/vnd.docker.container.image.v1+json")
        registry.publish("ai/gemma3", "270M-Q4_K_M", [(gemma_gguf, DMR_GGUF, {TITLE: "gemma3-dmr.gguf"})])
        with scripts.stack.backend(models, logs) as backend_url:
            env = {"INSECURE_REGISTRIES": registry.host, "DOCKER_CONFIG": str(tmp / "no-docker")}
            with scripts.stack.proxy(models, logs, None, backend_url, env) as (url, _):
                yield {"url": url, "registry": registry, "gemma": gemma_gguf, "models": models}


def generates(url: str, model: str) -> None:
    answer = requests.post(url + "/v1/generate", json={"model": model, "prompt": "The sky is", "max_tokens": 8,
                                                       "temperature": 0}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"].strip()


@pytest.mark.parametrize("reference, filename", [
    ("ollama://{host}/library/gemma3:270m", "gemma3-270m.gguf"),
    ("oci://{host}/ai/gemma3:270M-Q4_K_M", "gemma3-dmr.gguf"),
])
def test_gemma_from_a_registry_pulls_and_generates_through_the_proxy(stack, reference, filename):
    reference = reference.format(host=stack["registry"].host)
    lines = pull_lines(stack["url"], {"model": reference})
    complete = lines[-1]
    assert complete["status"] == "complete", lines[-3:]
    assert (complete["filename"], complete["source"]) == (filename, reference)
    assert complete["sha256"] == sha256_file(stack["gemma"]) and complete["digest"].startswith("sha256:")
    generates(stack["url"], filename.removesuffix(".gguf"))
    generates(stack["url"], reference)  # the reference as pulled names the model too
