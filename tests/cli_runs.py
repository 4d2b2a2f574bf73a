"""Running `python -m proxy` for the CLI tests: the environment it runs with (no proxy URL, models folder or key
of the caller's own) and a run on a pseudo-terminal, as a user at a terminal sees it."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from tests.helpers import REPO_ROOT

API_KEY = "cli-test-key"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROXY_URL", "PROXY_API_KEY", "MODELS_DIR")}
    return {**env, "PROXY_API_KEY": API_KEY, **extra}


def run_on_terminal(*args: str, env: dict[str, str], timeout_s: float = 30, columns: int | None = None
                    ) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal (`columns` wide when given); returns its exit
    status and output."""
    master, slave = pty.openpty()
    if columns is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "proxy", *args], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    output, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
        return proc.wait(timeout=5), output.decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
