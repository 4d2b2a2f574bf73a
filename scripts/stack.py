"""The live stack as processes, for benchmarks and the API fuzz run: fake Hub, backend, proxy."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.processes import PROXY_GUNICORN, free_port, running_process  # noqa: E402



@contextlib.contextmanager
def fake_hub(repos: dict[str, Path], log_dir: Path, throttle_bps: int | None = None) -> Iterator[str]:
    """A fake Hub process serving each folder as a repo; yields its URL."""
    port = free_port()
    args = ["-m", "tests.fakes.hub", "--port", str(port)]
    for repo, folder in repos.items():
        args += ["--repo", f"{repo}={folder}"]
    if throttle_bps:
        args += ["--throttle-bps", str(throttle_bps)]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, {}, url + "/api/models/none/none", log_dir / "hub.log"):
        yield url


@contextlib.contextmanager
def backend(models_dir: Path, log_dir: Path, env: dict | None = None) -> Iterator[str]:
    """The backend (`python -m server`) on a free port, its log in log_dir/backend.log; yields its URL."""
    with backend_process(models_dir, log_dir, env) as (url, _):
        yield url


@contextlib.contextmanager
def backend_process(models_dir: Path, log_dir: Path, env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The backend as `backend` starts it; yields its URL and process (for a test that checks it is alive)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {"MODELS_DIR": str(models_dir), "BACKEND_PORT": str(port), "BACKEND_HOST": "127.0.0.1", **(env or {})}
    with running_process(["-m", "server"], full_env, url + "/health", log_dir / "backend.log", timeout_s=120) as proc:
        yield url, proc


@contextlib.contextmanager
def proxy(models_dir: Path, log_dir: Path, hub_url: str | None, backend_url: str, env: dict | None = None,
          port: int | None = None, log_name: str = "proxy.log") -> Iterator[tuple[str, subprocess.Popen]]:
    """The proxy under gunicorn, as in production, on `port` (a free one by default), appending to
    log_dir/log_name; yields its URL and process. No hub_url: HF_ENDPOINT is left as the environment has it."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    hub = {"HF_ENDPOINT": hub_url} if hub_url else {}
    full_env = {"MODELS_DIR": str(models_dir), **hub, "BACKEND_URL": backend_url,
                "HOST": "127.0.0.1", "PORT": str(port), "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
    with running_process(PROXY_GUNICORN, full_env, url + "/livez", log_dir / log_name) as proc:
        yield url, proc


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process and its children (gunicorn's worker does the work), in MB."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total = max(total, int(line.split()[1]))
    return total / 1024


def worker_cpu_s(pid: int) -> float:
    """User + system CPU seconds of gunicorn's worker (the master's first child)."""
    fields = Path(f"/proc/{_children(pid)[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []
