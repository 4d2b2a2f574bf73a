"""llama.cpp's own client fetches from a proxy (docs/api.md, Serving peers): `llama-completion -hf REPO:Q4_K_M` with
HF_ENDPOINT=<proxy> finds the real Gemma the proxy holds (refs, tree, resolve), loads it and generates, and
the Hub serves llama.cpp nothing. The binary is llama.cpp as llama-cpp-python vendors it, built by
scripts/build_llama.sh (scripts/test.sh exports LLAMA_COMPLETION)."""
from __future__ import annotations

import os
import subprocess

import pytest
import requests

from scripts import stack
from scripts.gguf_files import sha256_file
from tests.fakes.hub import FakeHub
from tests.helpers import free_port, stack_dirs

REPO = "google/gemma-3-270m-GGUF"
PROMPT = "The capital of France is"


def llama_completion() -> str:
    path = os.environ.get("LLAMA_COMPLETION", "")
    if not os.access(path, os.X_OK):
        pytest.fail("LLAMA_COMPLETION names no llama-completion binary: scripts/test.sh builds it "
                    "(scripts/build_llama.sh prints the folder that holds it)")
    return path


def test_llama_cpp_hf_gets_gemma_from_the_proxy_and_generates(tmp_path, gemma_gguf):
    binary = llama_completion()
    models, logs = stack_dirs(tmp_path)
    with FakeHub() as hub:
        hub.add_repo(REPO, files={gemma_gguf.name: gemma_gguf})
        with stack.proxy(models, logs, hub.url, f"http://127.0.0.1:{free_port()}") as (url, _):
            pulled = requests.post(url + "/v1/api/pull", json={"model": REPO, "stream": False}, timeout=300)
            assert pulled.json()["status"] == "complete", pulled.text
            hub.clear_log()
            cache = tmp_path / "llama-cache"
            run = subprocess.run(
                [binary, "-hf", f"{REPO}:Q4_K_M", "-p", PROMPT, "-n", "8", "-no-cnv", "--temp", "0", "-t", "2"],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
                     "HF_ENDPOINT": url, "LLAMA_CACHE": str(cache)},
                capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-3000:]
            assert run.stdout.startswith(PROMPT) and len(run.stdout.strip()) > len(PROMPT), run.stdout
            fetched = [path for path in cache.rglob("*.gguf") if path.is_file()]
            assert [sha256_file(path) for path in fetched] == [sha256_file(gemma_gguf)]
            assert hub.requests() == [], "llama.cpp got everything from the proxy"
            asked = (logs / "proxy.log").read_text()
            assert f"GET /api/models/{REPO}/refs" in asked and f"/{REPO}/resolve/" in asked
