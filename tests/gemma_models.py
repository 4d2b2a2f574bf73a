"""The real Gemma in a models folder, and what the modules testing on it share: its model id, a copy with another
chat template, a module's Gemma folder, and the NDJSON lines of a pull through the proxy.

The file itself is conftest's session fixture `gemma_gguf` (assembled once); a test links it into the folder it
serves from under the names it needs, never copies it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

GEMMA = "gemma-3-270m-Q4_K_M"  # the model id of conftest's GEMMA_FILENAME
# Enums keep a forced call short: a base model fills free strings and numbers at length.
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Oslo", "Paris"]},
                                                  "unit": {"type": "string", "enum": ["C", "F"]}},
                  "required": ["city"], "additionalProperties": False}


def gemma_folder(gemma_gguf: Path, folder: Path, *names: str) -> Path:
    """`folder` (made if missing) holding Gemma as `<name>.gguf` for each model id in `names` (its own name when
    none): a hard link, a regular file as a pulled model is, or a symlink where the folder is on another
    filesystem. Deleting one deletes the link only."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names or (gemma_gguf.stem,):
        try:
            os.link(gemma_gguf, folder / f"{name}.gguf")
        except OSError:  # another filesystem, or one without hard links
            os.symlink(gemma_gguf, folder / f"{name}.gguf")
    return folder


def with_template(source: Path, target: Path, template: str) -> None:
    """A copy of `source` whose GGUF metadata carries `template` (gguf's own gguf_new_metadata)."""
    template_file = target.with_suffix(".jinja")
    template_file.write_text(template)
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(source), str(target),
                    "--chat-template-file", str(template_file), "--force"], check=True, capture_output=True)
    template_file.unlink()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, gemma_gguf) -> Path:
    """A module's own folder holding Gemma alone (a module imports it in place of pull_fixtures' models_dir)."""
    return gemma_folder(gemma_gguf, tmp_path_factory.mktemp("models"))


def pull_lines(url: str, body: dict) -> list[dict]:
    """The NDJSON lines of a pull through the proxy at `url`, after checking it answered 200 in NDJSON."""
    with requests.post(url + "/v1/api/pull", json=body, stream=True, timeout=300) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.iter_lines() if line]
