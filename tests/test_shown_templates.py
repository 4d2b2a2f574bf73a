"""The chat template /api/show gives for a GGUF without one (server.chat.shown) renders exactly what the family's
format renders, so what Ollama's clients read is the prompt the backend builds."""
from __future__ import annotations

import jinja2
import pytest
from llama_cpp import llama_chat_format

from server.chat import families
from server.chat.families import format_gemma
from server.chat.shown import CHATML, GEMMA

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": " Hello "},
     {"role": "assistant", "content": "Yes"}, {"role": "user", "content": "Again"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes"},
     {"role": "system", "content": "Rules."}, {"role": "system", "content": "More rules."}],
    [{"role": "system", "content": "One."}, {"role": "system", "content": "Two."}, {"role": "user", "content": ""}],
]


def _renders(template: str, messages: list[dict]) -> set[str]:
    """The template rendered as a client's plain Jinja does and as the backend renders a GGUF's template."""
    plain = jinja2.Environment(loader=jinja2.BaseLoader()).from_string(template).render(messages=messages)
    ours = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token="<eos>", bos_token="<bos>")
    return {plain, ours(messages=messages).prompt}


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_gemmas_shown_template_renders_what_the_family_format_does(messages):
    assert _renders(GEMMA, messages) == {format_gemma(messages).prompt}


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chatmls_shown_template_renders_what_the_family_format_does(messages):
    chatml = getattr(families, "format_chatml", None) or llama_chat_format.format_chatml  # as prompts.py picks it
    assert _renders(CHATML, messages) == {chatml(messages).prompt}
