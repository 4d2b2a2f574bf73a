"""A crash in llama.cpp on any thread of the backend leaves faulthandler's note, which server/crash.py turns into
the backend's exit status and message (issue 28): a stack overflow used to kill the process without a word,
because a thread's handler cannot run on the stack that overflowed. The grammar bounds keep requests from
getting there; this is what remains if anything does."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT

# A grammar nested 20,000 groups deep, compiled past every bound on a thread with a signal stack of its own.
OVERFLOW = """
import faulthandler, json, sys, threading
import llama_cpp as ll
from llama_cpp.llama_grammar import json_schema_to_gbnf
from core.signal_stack import use_signal_stack
faulthandler.enable()
ll.llama_backend_init()
params = ll.llama_model_default_params()
params.vocab_only = True
vocab = ll.llama_model_get_vocab(ll.llama_model_load_from_file(sys.argv[1].encode(), params))
grammar = json_schema_to_gbnf(json.dumps({"type": "string", "maxLength": 20000})).encode()

def compile_grammar():
    use_signal_stack()
    ll.llama_sampler_init_grammar(vocab, grammar, b"root")

thread = threading.Thread(target=compile_grammar)
thread.start()
thread.join()
"""


def test_a_thread_that_overflows_its_stack_in_llama_cpp_still_leaves_the_note(gemma_gguf):
    done = subprocess.run([sys.executable, "-c", OVERFLOW, str(gemma_gguf)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr[-2000:]
