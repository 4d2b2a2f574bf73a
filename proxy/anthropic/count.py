"""Counting a Messages request's input tokens (POST /v1/messages/count_tokens) without generating: the chat
rendered by the backend's template (llama-server's POST /apply-template), then tokenized (POST /tokenize)."""
from __future__ import annotations

from proxy.anthropic.request import MessagesRequest
from proxy.backend.chat import read_chat, start_chat
from proxy.backend.upstream import call_backend
from proxy.errors import ErrorCode, ProxyError


def count_input_tokens(asked: MessagesRequest) -> int:
    """The prompt tokens the request's chat is, as the backend's tokenizer counts them.

    Raises: ProxyError from the backend (model_not_found, backend_unavailable, ...).
    """
    try:
        prompt = call_backend("/apply-template", asked.body, asked.files).json().get("prompt")
        tokens = call_backend("/tokenize", {"model": asked.body["model"], "content": prompt, "add_special": True,
                                            "parse_special": True}, asked.files).json().get("tokens")
    except ProxyError as err:
        if err.code not in (ErrorCode.NOT_FOUND, ErrorCode.METHOD_NOT_ALLOWED):
            raise
        tokens = None
    if isinstance(tokens, list):
        # A template that writes the BOS text itself gets a second BOS from add_special; the chat path adds none
        # then, so one of two equal leading tokens is not counted (a chat prompt never starts with a token twice).
        return len(tokens) - (len(tokens) > 1 and tokens[0] == tokens[1])
    # A backend without those endpoints: the prompt tokens its usage counts for a one-token answer.
    return read_chat(start_chat({**asked.body, "max_tokens": 1}, asked.files)).prompt_tokens
