"""llama-server's answer shapes (tools/server): /completion's result and stream events, /props and /slots.

A /completion answer is one object with `content`, `stop: true`, `stop_type` (`eos`, `limit`, `word`),
`tokens_predicted`, `tokens_evaluated`, `tokens_cached`, `prompt` (the prompt as evaluated, special tokens
shown), `generation_settings` and `timings`; streamed, each piece is `data: {"content", "stop": false, ...}` and
the last event is that object with an empty `content`. No `[DONE]`: llama-server ends its native stream there.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Iterator

from ..engine.jobs import Finished, FinishReason, Job, SlotReport
from ..engine.sampling import Sampling
from .native_params import NativeCompletion
from .streaming import json_event

Event = Any  # str (a piece of text) or Finished
SAMPLERS = ["penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"]  # our chain's order (sampling.py)


class CompletionShape:
    """The answer to one /completion or /infill request, whole or as its stream."""

    def __init__(self, model_id: str, asked: NativeCompletion, job: Job, prompt_text: str, n_ctx: int):
        self.model_id = model_id
        self.asked = asked
        self.job = job
        self.prompt_text = prompt_text
        self.n_ctx = n_ctx

    def whole(self, text: str, end: Finished) -> dict:
        return self._pick(self._final(text, end))

    def stream(self, events: Iterator[Event]) -> Iterator[str]:
        for event in events:
            if isinstance(event, Finished):
                yield json_event(self._pick(self._final("", event)))
            elif event:
                yield json_event({"index": 0, "content": event, "tokens": [], "stop": False,
                                  "tokens_predicted": self.job.n_generated,
                                  "tokens_evaluated": len(self.job.prompt)})

    def _final(self, text: str, end: Finished) -> dict:
        limit = end.reason == FinishReason.LENGTH
        stop_type = "limit" if limit else "word" if end.stop_word else "eos"
        return {"index": 0, "content": text, "tokens": [], "stop": True, "model": self.model_id,
                "tokens_predicted": end.completion_tokens, "tokens_evaluated": end.prompt_tokens,
                "generation_settings": generation_settings(self.job.sampling, self.asked.n_predict,
                                                           list(self.job.stop), self.asked.request.stream),
                "prompt": self.prompt_text, "has_new_line": "\n" in text,
                "truncated": limit and end.prompt_tokens + end.completion_tokens >= self.n_ctx,
                "stop_type": stop_type, "stopping_word": end.stop_word, "tokens_cached": end.cached_tokens,
                "timings": timings(self.job, end, time.monotonic())}

    def _pick(self, answer: dict) -> dict:
        """llama-server's `response_fields`: only those, a path `a/b` read from `answer["a"]["b"]`."""
        if not self.asked.response_fields:
            return answer
        picked = {}
        for path in self.asked.response_fields:
            value: Any = answer
            for key in path.split("/"):
                value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
            if value is not _MISSING:
                picked[path] = value
        return picked


_MISSING = object()


def evaluated_only(model_id: str, prompt_tokens: int, prompt_text: str) -> dict:
    """The answer to `n_predict: 0`: the prompt counted, nothing generated (llama.vim sends these to warm up)."""
    return {"index": 0, "content": "", "tokens": [], "stop": True, "model": model_id, "tokens_predicted": 0,
            "tokens_evaluated": prompt_tokens, "prompt": prompt_text, "has_new_line": False, "truncated": False,
            "stop_type": "limit", "stopping_word": "", "tokens_cached": 0,
            "timings": _timings(0, 0, 0.0, 0, 0.0)}


def timings(job: Job, end: Finished, now: float) -> dict:
    """llama-server's `timings`: the prompt's time from submission to the first token, then generation's."""
    first = job.first_token_at or now
    return _timings(end.cached_tokens, end.prompt_tokens - end.cached_tokens, (first - job.submitted) * 1000,
                    end.completion_tokens, (now - first) * 1000)


def _timings(cache_n: int, prompt_n: int, prompt_ms: float, predicted_n: int, predicted_ms: float) -> dict:
    per = lambda ms, n: ms / n if n else 0.0  # noqa: E731
    rate = lambda ms, n: 1000.0 * n / ms if ms > 0 else 0.0  # noqa: E731
    return {"cache_n": cache_n, "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": per(prompt_ms, prompt_n), "prompt_per_second": rate(prompt_ms, prompt_n),
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": per(predicted_ms, predicted_n),
            "predicted_per_second": rate(predicted_ms, predicted_n)}


def generation_settings(sampling: Sampling, n_predict: int | None, stop: list[str], stream: bool) -> dict:
    """The sampling a request runs with, by llama-server's names."""
    values = {k: v for k, v in asdict(sampling).items() if k != "grammar" and not isinstance(v, (dict, list))}
    return {"n_predict": -1 if n_predict is None else n_predict, **values,
            "seed": values.get("seed") if values.get("seed") is not None else 0xFFFFFFFF,
            "stop": stop, "max_tokens": -1 if n_predict is None else n_predict, "stream": stream,
            "grammar": sampling.grammar or "", "samplers": SAMPLERS}


def slot_entry(state: SlotReport, n_ctx: int, params: dict) -> dict:
    """One element of llama-server's /slots."""
    return {"id": state.id, "id_task": -1, "n_ctx": n_ctx, "speculative": False, "is_processing": state.processing,
            "params": params, "n_cached": state.n_cached,
            "next_token": {"has_next_token": state.processing, "has_new_line": False, "n_remain": state.n_remain,
                           "n_decoded": state.n_decoded}}
