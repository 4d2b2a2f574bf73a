"""docker/start.sh as a process: the container entrypoint that runs the backend and the proxy.

The script runs from the checkout (APP_DIR) with an empty temporary MODELS_DIR and free ports, starting the
real `python -m server` and the real gunicorn proxy. Each check is also run on a copy of the script broken in
one specific way (no SIGTERM forwarding, no watch on the backend, no backend at all), and must fail there.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import requests

from scripts.gguf_files import random_gguf
from tests.helpers import REPO_ROOT, eventually, free_port, stop_process

START = REPO_ROOT / "docker" / "start.sh"
STARTUP_TIMEOUT_S = 90.0
# In the tests gunicorn's graceful shutdown is 5 s (PROXY_GRACEFUL_TIMEOUT_S); everything must be gone well
# within this, as in a pod everything must be gone within terminationGracePeriodSeconds.
GRACE_S = 20.0


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    """start.sh running in its own session, with the ports it was given and its log."""

    def __init__(self, script: Path, tmp_path: Path, extra_env: dict | None = None):
        self.port, self.backend_port = free_port(), free_port()
        self.models_dir = tmp_path / "models"
        self.models_dir.mkdir()
        self.log_path = tmp_path / "start.log"
        env = {**os.environ, "APP_DIR": str(REPO_ROOT), "MODELS_DIR": str(self.models_dir), "HOST": "127.0.0.1",
               "PORT": str(self.port), "BACKEND_PORT": str(self.backend_port),
               "BACKEND_URL": f"http://127.0.0.1:{self.backend_port}", "PYTHON": sys.executable,
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
               "HOME": str(tmp_path), "PROXY_GRACEFUL_TIMEOUT_S": "5", "BACKEND_START_TIMEOUT_S": "60",
               **(extra_env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(script)], cwd=tmp_path, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_healthy(self) -> bool:
        """Wait for /v1/health 200; False if the script exits first or time runs out."""
        def healthy() -> bool:
            with contextlib.suppress(requests.RequestException):
                return requests.get(self.url("/v1/health"), timeout=2).status_code == 200
            return False
        return eventually(lambda: self.proc.poll() is not None or healthy(), STARTUP_TIMEOUT_S) and healthy()

    def backend_pid(self) -> int | None:
        return next((pid for pid in descendants(self.proc.pid) if "-m server" in cmdline(pid)
                     and running(pid) and "-m server" not in cmdline(self._ppid(pid))), None)

    def backend_worker_pid(self) -> int | None:
        """The gunicorn worker of `python -m server`, where llama.cpp runs."""
        master = self.backend_pid()
        return next((pid for pid in descendants(master) if running(pid)), None) if master else None

    @staticmethod
    def _ppid(pid: int) -> int:
        with contextlib.suppress(OSError, IndexError, ValueError):
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return 0


@contextlib.contextmanager
def stack(script: Path, tmp_path: Path, extra_env: dict | None = None) -> Iterator[Stack]:
    """Run `script`; afterwards kill whatever of its process group is left, even processes it orphaned."""
    running_stack = Stack(script, tmp_path, extra_env)
    try:
        yield running_stack
    finally:
        stop_process(running_stack.proc, timeout_s=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running_stack.proc.pid, signal.SIGKILL)


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = START.read_text()
    assert old in text, f"{old!r} not in docker/start.sh: update the broken-copy test"
    script = tmp_path / "start.sh"
    script.write_text(text.replace(old, new))
    script.chmod(0o755)
    return script


# ---- the checks, each returning what went wrong --------------------------------------------------------------

def startup_problems(script: Path, tmp_path: Path) -> list[str]:
    with stack(script, tmp_path) as s:
        if not s.wait_healthy():
            return [f"/v1/health never answered 200 (exit {s.proc.poll()}):\n{s.log()}"]
        problems = []
        body = requests.get(s.url("/v1/health"), timeout=5).json()
        if body.get("status") != "ok":
            problems.append(f"/v1/health says {body}")
        if requests.get(s.url("/livez"), timeout=5).status_code != 200:
            problems.append("/livez is not 200")
        if requests.get(f"http://127.0.0.1:{s.backend_port}/health", timeout=5).status_code != 200:
            problems.append("the backend's /health is not 200")
        return problems


def sigterm_problems(script: Path, tmp_path: Path) -> list[str]:
    with stack(script, tmp_path) as s:
        if not s.wait_healthy():
            return [f"did not start:\n{s.log()}"]
        children = descendants(s.proc.pid)
        os.kill(s.proc.pid, signal.SIGTERM)  # to the script only, as the container runtime does to PID 1
        problems = []
        try:
            s.proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            problems.append(f"start.sh still running {GRACE_S}s after SIGTERM")
        if not eventually(lambda: not any(running(pid) for pid in children), GRACE_S):
            left = [cmdline(pid) for pid in children if running(pid)]
            problems.append(f"still running after SIGTERM: {left}")
        if port_open(s.port) or port_open(s.backend_port):
            problems.append("a port is still open after SIGTERM")
        return problems


def backend_death_problems(script: Path, tmp_path: Path) -> list[str]:
    with stack(script, tmp_path) as s:
        if not s.wait_healthy():
            return [f"did not start:\n{s.log()}"]
        backend = s.backend_pid()
        if backend is None:
            return ["no backend process found"]
        children = descendants(s.proc.pid)
        os.kill(backend, signal.SIGKILL)
        try:
            status = s.proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            return [f"start.sh still running {GRACE_S}s after the backend died"]
        problems = [] if status != 0 else ["start.sh exited 0 after the backend died"]
        if not eventually(lambda: not any(running(pid) for pid in children), GRACE_S):
            problems.append(f"left running: {[cmdline(pid) for pid in children if running(pid)]}")
        return problems


# ---- the tests ------------------------------------------------------------------------------------------------

def test_start_script_is_executable_bash():
    assert os.access(START, os.X_OK)
    assert subprocess.run(["bash", "-n", str(START)], capture_output=True).returncode == 0


def test_start_serves_health_with_an_empty_models_dir(tmp_path):
    assert startup_problems(START, tmp_path) == []


def test_sigterm_stops_backend_and_proxy_within_the_grace_period(tmp_path):
    assert sigterm_problems(START, tmp_path) == []


def test_backend_death_ends_the_script_non_zero(tmp_path):
    assert backend_death_problems(START, tmp_path) == []


def test_startup_check_fails_when_the_backend_is_not_started(tmp_path):
    script = broken_copy(tmp_path, '"$PYTHON" -m server &', "true &")
    assert startup_problems(script, tmp_path) != []


def test_sigterm_check_fails_without_signal_forwarding(tmp_path):
    script = broken_copy(tmp_path, "trap 'on_signal SIGTERM' TERM\n", "")
    assert sigterm_problems(script, tmp_path) != []


def test_backend_death_check_fails_when_only_the_proxy_is_watched(tmp_path):
    script = broken_copy(tmp_path, 'wait -n -p exited_pid "$backend_pid" "$proxy_pid"',
                         'wait -n -p exited_pid "$proxy_pid"')
    assert backend_death_problems(script, tmp_path) != []


@pytest.mark.parametrize("variable", ["APP_DIR", "MODELS_DIR", "PORT", "BACKEND_PORT", "PYTHON"])
def test_start_script_takes_paths_from_the_environment_with_container_defaults(variable):
    defaults = {"APP_DIR": "/app", "MODELS_DIR": "/models", "PORT": "8080", "BACKEND_PORT": "8081",
                "PYTHON": "python"}
    assert f'{variable}="${{{variable}:-{defaults[variable]}}}"' in START.read_text()


# ---- a backend killed by a signal is explained, in the log and in the proxy's answers ---------------------------

SIGILL_WORDS = ("SIGILL", "instructions this machine does not allow", "Troubleshooting")


def test_backend_killed_by_sigill_is_explained_in_the_log(tmp_path):
    with stack(START, tmp_path) as s:
        assert s.wait_healthy(), s.log()
        os.kill(s.backend_worker_pid(), signal.SIGILL)  # where llama.cpp runs
        assert s.proc.wait(GRACE_S) != 0
        log = s.log()
    assert all(words in log for words in SIGILL_WORDS), log


def test_scripts_start_keeps_the_proxy_up_and_says_why_the_backend_died(tmp_path):
    """scripts/start.sh, as a person runs it: after SIGILL the proxy answers backend_unavailable saying why."""
    # The llama-cpp-python wheel _setup.sh built is under the real HOME's cache, not the test's HOME.
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    with stack(REPO_ROOT / "scripts" / "start.sh", tmp_path, {"XDG_CACHE_HOME": cache}) as s:
        assert s.wait_healthy(), s.log()
        os.kill(s.backend_worker_pid(), signal.SIGILL)
        assert eventually(lambda: all(words in s.log() for words in SIGILL_WORDS), GRACE_S), s.log()
        random_gguf(s.models_dir / "tiny.gguf", 10_000, seed=1)  # a model the proxy knows, so it asks the backend
        answer = requests.post(s.url("/v1/generate"), json={"model": "tiny", "prompt": "hi"}, timeout=10)
        health = requests.get(s.url("/v1/health"), timeout=5)
        log = s.log()
        os.kill(s.proc.pid, signal.SIGINT)
        assert s.proc.wait(GRACE_S) == 0
    assert answer.status_code == 502 and answer.json()["code"] == "backend_unavailable", answer.text + log
    assert "SIGILL" in answer.json()["error"] and "Troubleshooting" in answer.json()["error"]
    assert health.status_code == 503 and "SIGILL" in health.json()["error"]


# ---- the manifest as JSON in MODELS_MANIFEST_JSON (SAP AI Core has no ConfigMaps) --------------------------------

def test_a_manifest_given_as_json_in_the_environment_is_reconciled(tmp_path):
    from tests.fakes.hub import FakeHub

    with FakeHub() as hub:
        hub.add_repo("acme/tiny-GGUF", files={"tiny.Q4_K_M.gguf": random_gguf(tmp_path / "tiny.gguf", 20_000,
                                                                               seed=2)})
        manifest = json.dumps({"models": [{"model": "acme/tiny-GGUF:Q4_K_M"}]})
        with stack(START, tmp_path, {"MODELS_MANIFEST_JSON": manifest, "HF_ENDPOINT": hub.url,
                                     "TMPDIR": str(tmp_path)}) as s:
            assert s.wait_healthy(), s.log()
            assert eventually(lambda: requests.get(s.url("/readyz"), timeout=5).status_code == 200, 30), s.log()
            listed = requests.get(s.url("/v1/api/manifest"), timeout=5).json()
    assert [(m["model"], m["filename"], m["state"]) for m in listed["models"]] == \
        [("acme/tiny-GGUF:Q4_K_M", "tiny.Q4_K_M.gguf", "ready")], listed
    assert (s.models_dir / "tiny.Q4_K_M.gguf").is_file()


def test_a_malformed_manifest_in_the_environment_stops_the_start_naming_the_entry_and_field(tmp_path):
    manifest = json.dumps({"models": [{"model": "acme/a-GGUF"}, {"model": "acme/b-GGUF", "sha256": "3f2a"}]})
    with stack(START, tmp_path, {"MODELS_MANIFEST_JSON": manifest, "TMPDIR": str(tmp_path)}) as s:
        assert s.proc.wait(STARTUP_TIMEOUT_S) != 0
        log = s.log()
    assert "models[1].sha256: expected 64 hex digits" in log, log


def test_both_manifest_variables_set_stop_the_start(tmp_path):
    with stack(START, tmp_path, {"MODELS_MANIFEST_JSON": '{"models": []}', "MODELS_MANIFEST": "/x.yaml",
                                 "TMPDIR": str(tmp_path)}) as s:
        assert s.proc.wait(STARTUP_TIMEOUT_S) != 0
        log = s.log()
    assert "both MODELS_MANIFEST and MODELS_MANIFEST_JSON are set" in log, log
