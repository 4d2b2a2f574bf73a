"""End to end on the real Gemma 3 270M model: fake Hub -> proxy pull -> backend serves it."""
from __future__ import annotations

import shutil

import pytest
import requests

import scripts.stack
from scripts.gguf_files import sha256_file, write_unloadable_gguf
from tests.fakes.hub import FakeHub
from tests.gemma_models import pull_lines
from tests.helpers import free_port, stack_dirs

REPO = "google/gemma-3-270m-GGUF"
BROKEN_REPO = "someone/madeup-GGUF"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    tmp = tmp_path_factory.mktemp("e2e")
    models, logs = stack_dirs(tmp)
    broken = write_unloadable_gguf(tmp / "madeup.Q4_K_M.gguf")
    with FakeHub() as hub:
        hub.add_repo(REPO, files={gemma_gguf.name: gemma_gguf, "README.md": b"# gemma"})
        hub.add_repo(BROKEN_REPO, files={broken.name: broken})
        with scripts.stack.backend(models, logs) as backend_url:
            yield {"hub": hub, "models": models, "logs": logs, "backend_url": backend_url, "gemma": gemma_gguf}


def start_proxy(stack):
    """The proxy's URL and, to enter, the proxy on it (a restart finds the same URL)."""
    port = free_port()
    return f"http://127.0.0.1:{port}", scripts.stack.proxy(stack["models"], stack["logs"], stack["hub"].url,
                                                           stack["backend_url"], port=port)


def test_pulled_gemma_is_listed_and_generates_through_the_proxy(stack):
    url, proxy = start_proxy(stack)
    with proxy:
        requests.delete(url + "/v1/api/delete", json={"filename": stack["gemma"].name}, timeout=30)  # a real pull
        lines = pull_lines(url, {"model": REPO})
        assert lines[0] == {"status": "starting", "model": REPO, "filename": stack["gemma"].name}
        assert any(line["status"] == "downloading" for line in lines)
        complete = lines[-1]
        assert complete["status"] == "complete", lines[-3:]
        assert complete["sha256"] == sha256_file(stack["gemma"])
        assert complete["revision"] == stack["hub"].commit_sha(REPO)
        assert (stack["models"] / stack["gemma"].name).read_bytes()[:4] == b"GGUF"

        model_id = stack["gemma"].name.removesuffix(".gguf")
        listed = requests.get(url + "/v1/models", timeout=30).json()
        assert model_id in [m["id"] for m in listed["data"]]

        answer = requests.post(url + "/v1/generate", json={"model": model_id, "prompt": "The sky is",
                                                           "max_tokens": 8, "temperature": 0}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"].strip()

        with requests.post(url + "/v1/chat/completions", stream=True, timeout=120, json={
                "model": model_id, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8,
                "stream": True}) as streamed:
            assert streamed.headers["Content-Type"].startswith("text/event-stream")
            events = [line for line in streamed.iter_lines() if line.startswith(b"data:")]
        assert events[-1] == b"data: [DONE]" and len(events) > 2


def test_verify_load_smoke_tests_gemma_before_complete(stack):
    url, proxy = start_proxy(stack)
    with proxy:
        requests.delete(url + "/v1/api/delete", json={"filename": stack["gemma"].name}, timeout=30)
        lines = pull_lines(url, {"model": REPO, "verify": "load"})
    statuses = [line["status"] for line in lines]
    assert statuses[-2:] == ["smoke_test", "complete"], lines[-3:]
    assert lines[-2]["model"] == stack["gemma"].name.removesuffix(".gguf")


def test_a_gguf_that_cannot_load_fails_the_smoke_test_and_is_not_served(stack):
    url, proxy = start_proxy(stack)
    with proxy:
        lines = pull_lines(url, {"model": BROKEN_REPO, "verify": "load"})
        assert lines[-1]["status"] == "error" and lines[-1]["code"] == "smoke_test_failed", lines[-3:]
        assert "smoke_test" in [line["status"] for line in lines]
        assert not (stack["models"] / "madeup.Q4_K_M.gguf").exists()
        listed = requests.get(url + "/v1/models", timeout=30).json()
        assert "madeup.Q4_K_M" not in [m["id"] for m in listed["data"]]
        failed = requests.post(url + "/v1/api/pull", json={"model": BROKEN_REPO, "verify": "load",
                                                           "stream": False}, timeout=120)
        assert failed.status_code == 422 and failed.json()["code"] == "smoke_test_failed"


def test_provenance_survives_a_proxy_restart(stack):
    url, proxy = start_proxy(stack)
    with proxy:
        assert pull_lines(url, {"model": REPO})[-1]["status"] == "complete"
    url, proxy = start_proxy(stack)
    with proxy:
        models = requests.get(url + "/v1/api/models", timeout=30).json()["models"]
    record = next(m for m in models if m["filename"] == stack["gemma"].name)
    assert record["repo"] == REPO
    assert record["commit"] == stack["hub"].commit_sha(REPO)
    assert record["sha256"] == sha256_file(stack["gemma"])
    assert record["size"] == stack["gemma"].stat().st_size and record["intact"] is True
    assert record["source_host"] == stack["hub"].url.removeprefix("http://") and record["pulled_at"]  # host:port


def test_a_file_that_no_longer_matches_its_record_is_flagged(stack, tmp_path):
    url, proxy = start_proxy(stack)
    with proxy:
        assert pull_lines(url, {"model": REPO})[-1]["status"] == "complete"
        installed = stack["models"] / stack["gemma"].name
        backup = tmp_path / "backup.gguf"
        shutil.copyfile(installed, backup)
        with open(installed, "r+b") as handle:
            handle.truncate(1000)
        try:
            models = requests.get(url + "/v1/api/models", timeout=30).json()["models"]
            assert next(m for m in models if m["filename"] == installed.name)["intact"] is False
            again = pull_lines(url, {"model": REPO})  # not cached any more: fetched and installed again
            assert again[-1]["status"] == "complete" and not again[-1].get("cached")
        finally:
            if installed.stat().st_size != backup.stat().st_size:
                shutil.copyfile(backup, installed)
