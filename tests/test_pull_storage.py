"""A small or full models volume: a full disk mid-pull is resumable.

The tests of a full volume mount a tmpfs of a few MiB over MODELS_DIR (root, as in CI).
"""
from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest

from tests.fakes.hub import Fault
from tests.pull_fixtures import MiB, content_gets, open_stream, range_start, same_bytes, top_level_ggufs, wait_until


@pytest.fixture
def small_volume(models_dir):
    """MODELS_DIR on a fresh 8 MiB tmpfs, unmounted at teardown. Ask for it before `make_app`, so the
    apps are stopped before the volume goes."""
    models_dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(models_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a small filesystem: mounting a tmpfs needs root ({mounted.stderr.strip()})")
    yield models_dir
    subprocess.run(["umount", "--lazy", str(models_dir)], check=True)


def fill_volume(path: Path) -> None:
    """Write `path` until the volume it is on has no byte left."""
    with open(path, "wb", buffering=0) as handle:
        block = b"\0" * MiB
        while block:
            try:
                handle.write(block)
            except OSError as err:
                assert err.errno == errno.ENOSPC, err
                block = block[: len(block) // 2]


# --- defect 6: a full volume in the middle of a pull ---------------------------------------------


def saved_progress(models_dir: Path, name: str) -> int:
    try:
        return sum(json.loads((models_dir / ".staging" / f"{name}.partial.json").read_text())["done"])
    except (OSError, ValueError):
        return 0


def test_full_volume_mid_pull_is_insufficient_storage_and_the_pull_resumes(small_volume, make_app, hub, make_gguf):
    name, repo = "big.Q4_K_M.gguf", "acme/big-GGUF"
    source = make_gguf(name, 3 * MiB)
    hub.add_repo(repo, files={name: source})
    hub.faults.add(Fault.stall(after_bytes=1 * MiB), file=name)
    settings = dict(pull_connections=1, pull_chunk_bytes=4 * MiB, pull_stall_timeout_s=30)
    stream = open_stream(make_app(**settings).test_client(), model=repo)
    stream.until(lambda event: event.get("completed", 0) >= 1 * MiB)
    wait_until(lambda: saved_progress(small_volume, name) >= 1 * MiB, 5, "progress saved")

    fill_volume(small_volume / "filler.bin")
    last = stream.rest()[-1]

    assert last["status"] == "error" and last["code"] == "insufficient_storage", last
    assert list(small_volume.rglob("*.tmp")) == []
    (small_volume / "filler.bin").unlink()
    hub.faults.release_stalls()
    make_app(**settings)  # a restart resumes the pull its note names
    wait_until(lambda: top_level_ggufs(small_volume) == [name], 10, "the resumed pull")
    assert range_start(content_gets(hub, repo, name)[-1]) >= 1 * MiB, "resumed, not started over"
    assert same_bytes(small_volume / name, source)
