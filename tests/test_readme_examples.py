"""The README's commands, walked in order as a newcomer would type them, against a proxy and backend on the fake
Hub and the real Gemma 3 270M: the README's text is this test's input.

The fake Hub holds the README's repository (`bartowski/Qwen2.5-0.5B-Instruct-GGUF`, which exists on the real
Hub) with the real Gemma's bytes under the README's file name, so every command really pulls, verifies, loads and
generates. `scripts/start.sh` and `scripts/test.sh` are the suite's own business, not walked here; `localhost:8080`
becomes the test proxy's address and `gguf-proxy` finds it through `PROXY_URL`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.hub import FakeHub
from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402

README = REPO_ROOT / "README.md"
REPO, FILENAME = "bartowski/Qwen2.5-0.5B-Instruct-GGUF", "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"
GENERATING = re.compile(r"/v1/(generate|completions|chat/completions)\b")
BIN = Path(sys.executable).parent  # the venv's: gguf-proxy, python


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def commands(text: str) -> list[str]:
    """Shell commands of the README's sh blocks in order, continuation lines joined, comments and blanks out."""
    lines = [line for block in blocks(text, "sh") for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def walked(text: str) -> list[str]:
    """The commands a newcomer runs once the stack is up: all but the two that start and test it."""
    return [command for command in commands(text) if not command.startswith("scripts/")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    """The fake Hub, the real backend and the proxy; yields (proxy URL, MODELS_DIR)."""
    models, logs = stack_dirs(tmp_path_factory.mktemp("readme"))
    with FakeHub() as hub:
        hub.add_repo(REPO, files={FILENAME: gemma_gguf, "README.md": b"# Qwen2.5 0.5B Instruct, GGUF\n"})
        with backend(models, logs) as backend_url, proxy(models, logs, hub.url, backend_url) as (url, _):
            yield url, models


def run(command: str, url: str) -> subprocess.CompletedProcess:
    """One README command in bash, from the checkout, with the venv's commands on the PATH."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PROXY_URL": url}
    env.pop("PROXY_API_KEY", None)
    command = command.replace("localhost:8080", url.removeprefix("http://"))
    return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert commands(text)[:2] == [
        "scripts/start.sh   # creates .venv, installs, starts the backend (:8081) then the proxy (:8080)",
        "scripts/test.sh    # same setup, then every test (a schemathesis run against the live stack included)"]


def test_every_generation_example_sets_max_tokens():
    examples = [command for command in commands(README.read_text()) if GENERATING.search(command)]
    assert len(examples) >= 3
    assert [command for command in examples if "max_tokens" not in command] == []


def test_the_readme_commands_work_in_order(stack):
    """Each command in turn: it exits 0 and answers no error; then what it did is checked where it matters."""
    url, models = stack
    outputs = []
    for command in walked(README.read_text()):
        result = run(command, url)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert '"error"' not in result.stdout, f"{command}\n{result.stdout}"
        outputs.append((command, result.stdout))

    by_start = {command.split()[0] + " " + command.split()[1]: out for command, out in outputs}
    pulled = next(out for command, out in outputs if command.startswith("gguf-proxy pull"))
    assert f"installed {models.resolve() / FILENAME}" in pulled, pulled
    assert re.search(r"^Qwen2\.5-0\.5B-Instruct-Q4_K_M\s+\S+ MB\s+" + re.escape(REPO) + r"\s+yes$",
                     by_start["gguf-proxy ls"], re.MULTILINE), by_start["gguf-proxy ls"]
    chats = [json.loads(out) for command, out in outputs if "/v1/chat/completions" in command]
    assert chats and chats[0]["choices"][0]["message"]["content"], chats
    http_pull = [json.loads(line) for command, out in outputs if "/v1/api/pull" in command for line in out.splitlines()]
    assert http_pull[-1]["status"] == "complete" and http_pull[-1]["cached"] is True, http_pull
    assert outputs[-1][1] == f"deleted {FILENAME}\n"  # the walk ends removing the model, as the README does
    assert not (models / FILENAME).exists()


def test_the_readme_python_examples_run_against_the_stack(stack):
    """The openai, anthropic and ollama examples, as printed, with the test proxy's address."""
    url, _ = stack
    text = README.read_text()
    examples = [block for block in blocks(text, "python") if any(c in block for c in ("OpenAI(", "Client(",
                                                                                         "Anthropic("))]
    assert len(examples) == 3
    pulled = run(f"gguf-proxy pull {REPO}:Q4_K_M", url)  # the shell walk ends by removing it
    assert pulled.returncode == 0, pulled.stderr
    for example in examples:
        assert any(f'{name}="http://127.0.0.1:8080{path}"' in example
                   for name, path in (("base_url", "/v1"), ("host", ""), ("base_url", "")))
        if "OpenAI(" in example or "Anthropic(" in example:
            assert "max_tokens=" in example
        code = example.replace("http://127.0.0.1:8080", url)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{example}\n{result.stderr}"
        assert result.stdout.strip(), example
