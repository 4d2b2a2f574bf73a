"""The README's generation examples set `max_tokens` (without it a model may generate for minutes), and one
shows the `openai` SDK against the proxy."""
from __future__ import annotations

import re

from tests.helpers import REPO_ROOT

GENERATING = re.compile(r"/v1/(generate|completions|chat/completions)\b")


def commands(text: str) -> list[str]:
    """Shell commands of the README's code blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def test_every_generation_example_sets_max_tokens():
    text = (REPO_ROOT / "README.md").read_text()
    examples = [command for command in commands(text) if GENERATING.search(command) and "curl" in command]

    assert len(examples) >= 3
    assert [command for command in examples if "max_tokens" not in command] == []


def test_the_readme_shows_the_openai_sdk_against_the_proxy_with_max_tokens():
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.DOTALL)
    sdk = [block for block in blocks if "from openai import OpenAI" in block]

    assert sdk and 'base_url="http://127.0.0.1:8080/v1"' in sdk[0] and "max_tokens=" in sdk[0]
    compile(sdk[0], "README.md", "exec")


def test_the_settings_table_lists_the_declared_models_and_retention_settings():
    table = (REPO_ROOT / "README.md").read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    for name in ("MODELS_MANIFEST", "MODELS_MANIFEST_JSON", "MODELS_MAX_BYTES", "MODELS_TTL_DAYS"):
        assert f"`{name}`" in table, name


def test_the_readme_manifest_example_is_a_valid_manifest():
    from proxy.manifest import parse_manifest

    section = (REPO_ROOT / "README.md").read_text().split("## Declared models", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)
    entries = parse_manifest(example, "README")
    assert [e.model for e in entries] == ["bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", "ollama://gemma3:270m"]
    assert entries[0].sha256 and entries[0].revision and entries[0].verify == "load"
