"""Declared models end to end on the real Gemma 3 270M: fake Hub, the real backend, the gunicorn proxy.

A manifest of two entries, Gemma with `verify: load` and a small synthetic GGUF: /readyz is 503 naming both
while they are pulled, then 200 once both are installed and Gemma smoke-tested; /v1/api/manifest follows the
states. A restarted proxy finds both installed: no byte fetched, Gemma not smoke-tested again.
"""
from __future__ import annotations

import time

import pytest
import requests

import scripts.stack
from scripts.gguf_files import random_gguf
from tests.fakes.hub import FakeHub
from tests.fakes.hub_faults import Fault
from tests.helpers import free_port, stack_dirs

GEMMA_REPO, TINY_REPO, TINY = "google/gemma-3-270m-GGUF", "acme/tiny-GGUF", "tiny.Q4_K_M.gguf"
MANIFEST = f"""models:
  - model: {GEMMA_REPO}
    verify: load
  - model: {TINY_REPO}
"""


@pytest.fixture
def stack(tmp_path, gemma_gguf):
    models, logs = stack_dirs(tmp_path)
    manifest = tmp_path / "models.yaml"
    manifest.write_text(MANIFEST)
    with FakeHub() as hub:
        hub.add_repo(GEMMA_REPO, files={gemma_gguf.name: gemma_gguf})
        hub.add_repo(TINY_REPO, files={TINY: random_gguf(tmp_path / TINY, 50_000, seed=3)})
        with scripts.stack.backend(models, logs) as backend_url:
            yield {"hub": hub, "models": models, "logs": logs, "backend_url": backend_url, "gemma": gemma_gguf,
                   "manifest": manifest}


def start_proxy(stack):
    """The proxy's URL and, to enter, the proxy on it (a restart finds the same URL)."""
    port = free_port()
    env = {"MODELS_MANIFEST": str(stack["manifest"]), "PULL_STALL_TIMEOUT_S": "300"}
    return f"http://127.0.0.1:{port}", scripts.stack.proxy(stack["models"], stack["logs"], stack["hub"].url,
                                                           stack["backend_url"], env, port=port)


def states(url: str) -> dict[str, str]:
    return {m["model"]: m["state"] for m in requests.get(url + "/v1/api/manifest", timeout=10).json()["models"]}


def wait_ready(url: str, timeout_s: float, seen: dict[str, list[str]]) -> requests.Response:
    """Poll /readyz until 200, recording each entry's states as /v1/api/manifest shows them change."""
    def record() -> None:
        for model, state in states(url).items():
            if not seen.setdefault(model, []) or seen[model][-1] != state:
                seen[model].append(state)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record()
        ready = requests.get(url + "/readyz", timeout=10)
        if ready.status_code == 200:
            record()  # an entry may have turned ready between the two requests
            return ready
        time.sleep(0.2)
    raise AssertionError(f"/readyz not 200 after {timeout_s}s: {ready.text}; states seen {seen}")


def content_bytes(hub) -> int:
    return sum(r.body_bytes for r in hub.requests() if r.place in ("resolve", "cdn") and r.method == "GET")


def test_declared_gemma_and_a_small_model_make_the_pod_ready_and_survive_a_restart(stack):
    hub, gemma = stack["hub"], stack["gemma"].name
    stall = hub.faults.add(Fault.stall(after_bytes=4096), file=gemma)  # Gemma held mid-pull until released
    url, proxy = start_proxy(stack)
    with proxy:
        deadline = time.monotonic() + 30
        while not stall.fired and time.monotonic() < deadline:
            time.sleep(0.05)
        not_ready = requests.get(url + "/readyz", timeout=10)
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["status"] == "not_ready"
        assert {e["model"] for e in not_ready.json()["not_ready"]} == {GEMMA_REPO, TINY_REPO}, not_ready.text
        seen = {model: [state] for model, state in states(url).items()}
        assert seen[GEMMA_REPO] in (["queued"], ["pulling"]), seen
        hub.faults.release_stalls()

        assert wait_ready(url, 300, seen).json() == {"status": "ready"}
        assert seen[GEMMA_REPO][-1] == "ready" and seen[TINY_REPO][-1] == "ready", seen
        assert "pulling" in seen[GEMMA_REPO], seen  # states shown as they change
        records = {m["filename"]: m for m in requests.get(url + "/v1/api/models", timeout=30).json()["models"]}
        assert records[gemma]["smoke_tested"] is True and records[TINY]["smoke_tested"] is False
        listed = requests.get(url + "/v1/api/manifest", timeout=10).json()
        assert listed["ready"] is True
        assert {m["model"]: m["filename"] for m in listed["models"]} == {GEMMA_REPO: gemma, TINY_REPO: TINY}

    hub.clear_log()
    url, proxy = start_proxy(stack)
    with proxy:
        assert wait_ready(url, 60, {}).json() == {"status": "ready"}
        pulls = requests.get(url + "/v1/api/pulls", timeout=10).json()["pulls"]
    assert content_bytes(hub) == 0  # both installed with the same bytes: nothing fetched
    gemma_pulls = [p for p in pulls if p["filename"] == gemma]
    assert gemma_pulls and all(p["status"] == "complete" and p.get("cached") for p in gemma_pulls), pulls
    proxy_log = (stack["logs"] / "proxy.log").read_text(errors="replace")
    assert proxy_log.count("smoke test of gemma-3-270m-Q4_K_M passed") == 1, proxy_log[-3000:]  # the first run's
