"""Chat formats of model families, for GGUFs without a chat template of their own, written after each family's
official template so that no message is dropped (llama-cpp-python's `format_gemma` drops system messages)."""
from __future__ import annotations

from typing import Any

from llama_cpp.llama_chat_format import ChatFormatterResponse

GEMMA_END = "<end_of_turn>\n"


def format_gemma(messages: list[dict], **_: Any) -> ChatFormatterResponse:
    """Gemma's turns, as Gemma 3's official template: system text opens the first user turn after it (followed by
    a blank line), assistant turns are the `model` role, contents are trimmed, and the prompt ends with an open
    model turn. Without BOS (the tokenizer adds it)."""
    turns, system = [], []
    for message in messages:
        role, text = message.get("role"), content_text(message.get("content"))
        if role == "system":
            system.append(text)
            continue
        if role == "user" and system:
            text = "\n\n".join(system + [text]).strip()  # Gemma 3's template: system + "\n\n" + user
            system = []
        turns.append(f"<start_of_turn>{'model' if role == 'assistant' else role}\n{text}{GEMMA_END}")
    if system:  # system text with no user turn after it still reaches the model, as a user turn
        turns.append(f"<start_of_turn>user\n{chr(10).join(system).strip()}{GEMMA_END}")
    return ChatFormatterResponse(prompt="".join(turns) + "<start_of_turn>model\n", stop=GEMMA_END)


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of OpenAI content parts, trimmed."""
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content
                          if isinstance(part, dict) and part.get("type") == "text")
    return (content or "").strip() if isinstance(content, str) else ""
