"""A malformed MODELS_MANIFEST stops the real gunicorn proxy at start, with the message, never half-configured."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import PROXY_GUNICORN, REPO_ROOT, free_port



def test_a_malformed_manifest_makes_the_proxy_exit_non_zero_with_the_message(tmp_path):
    manifest = tmp_path / "models.yaml"
    manifest.write_text("models:\n  - model: acme/a-GGUF\n  - model: acme/b-GGUF\n    sha256: '3f2a'\n")
    env = {**os.environ, "MODELS_MANIFEST": str(manifest), "MODELS_DIR": str(tmp_path / "models"),
           "PORT": str(free_port()), "BACKEND_URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run([sys.executable, *PROXY_GUNICORN], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "MODELS_MANIFEST models[1].sha256: expected 64 hex digits" in done.stdout + done.stderr
