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
