"""Prompts from chat messages: the model's own chat template from its GGUF (rendered by llama-cpp-python's
Jinja2 formatter), or for a model without one its family's format (server.chat.families where ours keeps what
llama-cpp-python's drops; ChatML by default, as llama.cpp's server)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from core.gguf_check import GGUFHeader

from ..errors import InvalidRequest
from . import families
from .shown import family_template

_FORMAT_BY_ARCH = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma"}
_DEFAULT_CHAT_FORMAT = "chatml"


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered chat: the prompt text, the stop strings the format adds, and whether it holds BOS already."""

    text: str
    stop: tuple[str, ...]
    added_special: bool


@dataclass(frozen=True)
class ChatFormat:
    render_messages: Callable[..., Any]
    has_template: bool  # the GGUF carries a chat template (Shimmy's generate uses it for a bare prompt)
    template: str = ""  # the template as text for clients that read it (server.chat.shown)

    def render(self, messages: list[dict], **template_kwargs: Any) -> ChatPrompt:
        """The prompt for `messages`; `template_kwargs` go to the template (`tools`, `enable_thinking`).

        Raises:
            InvalidRequest: the messages do not fit the model's chat template (it raised).
        """
        try:
            result = self.render_messages(messages=messages, **template_kwargs)
        except Exception as err:  # a template's raise_exception() or a Jinja error: the messages' fault
            raise InvalidRequest(f"the messages do not fit the model's chat template: {_first_line(err)}") from err
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return ChatPrompt(result.prompt, tuple(s for s in stop if s), bool(result.added_special))


def chat_format_for(model: Any, header: GGUFHeader) -> ChatFormat:
    """The chat format of a loaded model (`llama_cpp._internals.LlamaModel`)."""
    from llama_cpp import llama_chat_format

    template = model.metadata().get("tokenizer.chat_template")
    if template:
        eos, bos = model.token_eos(), model.token_bos()
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        return ChatFormat(formatter, has_template=True, template=template)
    name = _FORMAT_BY_ARCH.get(header.architecture or "", _DEFAULT_CHAT_FORMAT)
    return ChatFormat(getattr(families, f"format_{name}", None) or getattr(llama_chat_format, f"format_{name}"),
                      has_template=False, template=family_template(name))


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
