"""Schemathesis against the live proxy (fake Hub + real backend + proxy under gunicorn).

Fails when any generated request gets a 500, a status or content type the OpenAPI document does not
list, or a body off its schema. Prints how many requests it generated.
Usage: python scripts/fuzz_api.py [--max-examples N]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from stack import ROOT, backend, fake_hub, proxy

from scripts.gguf_files import random_gguf

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=40)
    args = parser.parse_args()
    status, output = fuzz_live_stack(args.max_examples)
    print(output)
    return status


def fuzz_live_stack(max_examples: int = 40) -> tuple[int, str]:
    """Start the stack, run schemathesis against it; the exit status and what it printed (with the
    services' last log lines when it failed). tests/test_api_fuzz.py runs this inside pytest."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        tmp_path = Path(tmp)
        repo_dir, models, logs = tmp_path / "repo", tmp_path / "models", tmp_path / "logs"
        for folder in (repo_dir, models, logs):
            folder.mkdir()
        random_gguf(repo_dir / "tiny.Q4_K_M.gguf", 200_000, seed=7)
        # Only the fake Hub's repos may be pulled: a generated Ollama name (`/api/pull {"model": "c6"}`) would
        # otherwise go to registry.ollama.ai, which this sandbox cannot reach, and rightly answer 502.
        with fake_hub({"fuzz/tiny": repo_dir}, logs) as hub_url, backend(models, logs) as backend_url, \
                proxy(models, logs, hub_url, backend_url, env={"ALLOWED_REPOS": "fuzz/*"}) as (proxy_url, _):
            status, output = run_schemathesis(proxy_url, max_examples)
        if status != 0:
            for log in sorted(logs.iterdir()):
                output += f"\n--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-30:])
    return status, output


# The same cases every run, so a CI failure can be run again as it was (another seed: FUZZ_SEED=N).
SEED = int(os.environ.get("FUZZ_SEED", "26"))


def run_schemathesis(proxy_url: str, max_examples: int) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{proxy_url}/openapi.json",
        "--checks", CHECKS, "--max-examples", str(max_examples), "--workers", "1", "--seed", str(SEED),
        "--request-timeout", "60", "--phases", "examples,coverage,fuzzing", "--no-color",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    counts = re.findall(r"(\d+) generated", output)
    output += (f"\nschemathesis generated {sum(map(int, counts)) if counts else 'an unknown number of'} "
               f"test cases; exit status {result.returncode}")
    return result.returncode, output


if __name__ == "__main__":
    sys.exit(main())
