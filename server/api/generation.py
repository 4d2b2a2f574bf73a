"""Generation through the batching engine: the request's thread renders and tokenizes the prompt, hands the
engine a `Job` and reads its events (text pieces, then `Finished`); server.api.shapes turns them into OpenAI's
and Shimmy's answers."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

from core.errors import ErrorCode

from ..chat.agent import ChatTurn, plan_turn
from ..chat.tool_formats import format_override
from .agent_shapes import AgentOutput
from ..chat.fim import FimRequest, fim_prompt
from ..chat.truncation import answer_room, fit_messages, fit_tokens
from ..engine.jobs import Finished, Job, JobEvents
from ..engine.stats import ServingStats
from ..errors import BackendError
from ..residency.models import Lease
from .params import GenerationRequest
from ..engine.sampling import Sampling

Event = Any  # str (a piece of text) or Finished


def make_job(lease: Lease, request: GenerationRequest, grammar: str | None = None) -> Job:
    """The job for `request` on the leased model: its prompt rendered (chat) and tokenized, its sampling
    (`grammar`: server.engine.sampling.grammar_for of its response_format).

    Raises:
        InvalidRequest: the messages do not fit the model's chat template; a `suffix` for a model without FIM
            tokens.
    """
    handle = lease.loaded.llama
    stop = tuple(request.sampling.get("stop") or ())
    messages = chat_messages(handle.chat.has_template, request)
    max_tokens = request.sampling.get("max_tokens")
    limit = lease.n_ctx - answer_room(lease.n_ctx, max_tokens)
    turn = None
    if messages is not None:
        override = format_override(handle.settings.tool_formats, lease.model.id)
        if request.truncate:
            rendered = lambda kept: len(_turn_tokens(handle, chat_turn(handle, kept, request, override)))  # noqa: E731
            messages = fit_messages(messages, rendered, limit)
        turn = chat_turn(handle, messages, request, override)
        tokens = _turn_tokens(handle, turn)
        stop += turn.prompt.stop
    else:
        prompt = _raw_prompt(request)
        if request.suffix is not None:
            tokens = fim_prompt(handle, lease.model.id, FimRequest(prefix=prompt, suffix=request.suffix))
        else:
            tokens = handle.tokenize(prompt, add_bos=True, special=True) if prompt else [handle.model.token_bos()]
        tokens = fit_tokens(tokens, limit) if request.truncate else tokens
    sampling = Sampling.of(request.sampling, grammar)
    if turn is not None:
        sampling = replace(sampling, grammar=turn.grammar or grammar, grammar_triggers=turn.triggers,
                           grammar_trigger_tokens=turn.trigger_tokens)
    return Job(prompt=tokens, sampling=sampling, max_tokens=max_tokens if max_tokens else None, stop=stop,
               waiter=lease.waiter, special=turn is not None and turn.special,
               reader=None if turn is None or turn.reader.plain else turn.reader)


def rendered_chat(lease: Lease, request: GenerationRequest) -> str:
    """A chat request's prompt as make_job renders it (the model's template with the request's tools and thinking),
    before truncation: what llama-server's /apply-template answers.

    Raises:
        InvalidRequest: the messages do not fit the model's chat template; a tool's schema gives no grammar.
    """
    handle = lease.loaded.llama
    override = format_override(handle.settings.tool_formats, lease.model.id)
    return chat_turn(handle, chat_messages(handle.chat.has_template, request) or [], request, override).prompt.text


def agent_output(lease: Lease, job: Job, stats: ServingStats) -> AgentOutput | None:
    """How the API reads `job`'s answer (tool calls, reasoning), or None when its text is the content."""
    if job.reader is None:
        return None
    handle = lease.loaded.llama
    return AgentOutput(job.reader, lambda text: len(handle.tokenize(text, add_bos=False, special=False)), stats)


def chat_turn(handle: Any, messages: list[dict], request: GenerationRequest, tool_format: str | None) -> ChatTurn:
    """`messages` rendered by the model's chat format, with the request's tools and thinking (calls in
    `tool_format`, None: the template's).

    Raises:
        InvalidRequest: the messages do not fit the model's chat template; a tool's schema gives no grammar.
    """
    return plan_turn(handle.chat, messages, request.tools, request.thinking, lambda text: _one_token(handle, text),
                     tool_format)


def _turn_tokens(handle: Any, turn: ChatTurn) -> list[int]:
    return handle.tokenize(turn.prompt.text, add_bos=not turn.prompt.added_special, special=True)


def _one_token(handle: Any, text: str) -> int | None:
    """The token that spells `text`, if one does."""
    tokens = handle.tokenize(text, add_bos=False, special=True)
    return tokens[0] if len(tokens) == 1 else None


def run(lease: Lease, job: Job) -> JobEvents:
    """Submit `job` now (so a full queue or a prompt too long is a real HTTP status) and read its events until
    `Finished`; the reader cancels the job when its client leaves or it is closed before the end.

    Raises:
        ServerBusy: the model's queue is full.
        InvalidRequest: the prompt leaves no room for an answer in the context.
    """
    lease.engine.submit(job)
    return JobEvents(job)


def chat_messages(has_template: bool, request: GenerationRequest) -> list[dict] | None:
    """The chat messages to render, or None to complete the raw prompt.

    Chat requests have messages; Shimmy's generate sends a bare `prompt` as the user's message through the
    model's own chat template, as Shimmy does, and completes it as it is on a model without one.
    """
    system = [{"role": "system", "content": request.system}] if request.system else []
    if request.messages is not None:
        return system + request.messages
    if request.kind != "generate" or not has_template:
        return None
    return system + [{"role": "user", "content": request.prompt}]


def _raw_prompt(request: GenerationRequest) -> str:
    if request.system and request.kind == "generate":
        return f"{request.system}\n\n{request.prompt}"
    return request.prompt or ""


def collect(events: Iterator[Event]) -> tuple[str, Finished]:
    """The whole text of a job and how it ended."""
    parts = []
    for event in events:
        if isinstance(event, Finished):
            return "".join(parts), event
        parts.append(event)
    raise BackendError(ErrorCode.INTERNAL_ERROR, "generation ended without an answer; see the backend's log")
