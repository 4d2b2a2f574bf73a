"""scripts/start.sh when a port it needs is taken (a stack started before): it says so at once and exits
non-zero, starting nothing, instead of printing the URLs and retrying the bind for seconds.

The script runs as it is, from a copy of scripts/ whose _setup.sh only sets up what the real one leaves behind
(ROOT, the venv on PATH): the real one installs and builds, which is not a test's business.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, free_port

SETUP_STUB = f"""set -euo pipefail
ROOT={REPO_ROOT}
cd "$ROOT"
export PATH="{Path(sys.executable).parent}:$PATH"
"""


@pytest.fixture
def start_sh(tmp_path) -> Path:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "start.sh", scripts / "start.sh")
    (scripts / "_setup.sh").write_text(SETUP_STUB)
    return scripts / "start.sh"


@pytest.mark.parametrize("taken, variable", [("proxy", "PORT"), ("backend", "BACKEND_PORT")])
def test_a_taken_port_ends_the_start_at_once_naming_it(start_sh, tmp_path, taken, variable):
    with socket.create_server(("127.0.0.1", 0)) as other_stack:
        busy = other_stack.getsockname()[1]
        ports = {"PORT": str(free_port()), "BACKEND_PORT": str(free_port()), variable: str(busy)}
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODELS_DIR": str(tmp_path / "models"), **ports}
        began = time.monotonic()
        result = subprocess.run(["bash", str(start_sh)], env=env, capture_output=True, text=True, timeout=60)
        took_s = time.monotonic() - began

    assert result.returncode != 0
    assert took_s < 5, f"took {took_s:.1f} s"
    assert f"error: port {busy} on 127.0.0.1, wanted by the {taken}, is in use" in result.stderr, result.stderr
    assert f"set {variable} to a free port" in result.stderr
    assert "backend on" not in result.stdout and "proxy on" not in result.stdout  # nothing was started
