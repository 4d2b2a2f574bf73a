"""A llama_cpp.Llama that can be stopped between tokens. Imported on first load: llama.cpp lives only
in gunicorn's worker, never in its master before the fork."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import llama_cpp


class InterruptibleLlama(llama_cpp.Llama):
    """Calls `between_tokens()` before each evaluation; what it raises ends the generation there.

    Every token of a completion, a chat completion or a stream goes through `eval`. llama-cpp-python's
    own hooks do not serve: chat completions take no stopping criteria, and logits processors run
    inside a C callback, where exceptions are lost.
    """

    between_tokens: Optional[Callable[[], None]] = None

    def eval(self, tokens: Sequence[int]) -> None:
        if self.between_tokens is not None:
            self.between_tokens()
        super().eval(tokens)
