"""A small, full or littered models volume: dead staging reclaimed, a full disk mid-pull resumable.

The tests of a full volume mount a tmpfs of a few MiB over MODELS_DIR (root, as in CI); the sweep
tests need no mount.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from proxy.pulls.install import Installer
from proxy.models_dir.store import ModelStore
from tests.fakes.hub import Fault
from tests.helpers import unavailable
from tests.pull_fixtures import (
    MiB, content_gets, open_stream, pull, range_start, same_bytes, staging_files, top_level_ggufs,
    wait_until,
)

DAY_S = 24 * 3600


@pytest.fixture
def small_volume(models_dir):
    """MODELS_DIR on a fresh 8 MiB tmpfs, unmounted at teardown. Ask for it before `make_app`, so the
    apps are stopped before the volume goes."""
    models_dir.mkdir(parents=True)
    if shutil.which("mount") is None:
        unavailable("needs a small filesystem: no mount command to make a tmpfs with")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(models_dir)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        unavailable(f"needs a small filesystem: mounting a tmpfs needs root ({mounted.stderr.strip()})")
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


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def leave_dead_staging(make_app, hub, make_gguf, name: str, size: int) -> None:
    """What a pull that failed with hub_unavailable after allocating its staging file leaves."""
    repo = f"acme/{name.split('.')[0]}-GGUF"
    hub.add_repo(repo, files={name: make_gguf(name, size)})
    hub.faults.add(Fault.status(503, times=None), file=name)
    events = pull(make_app(pull_max_retries=2).test_client(), model=repo)
    assert events[-1]["code"] == "hub_unavailable", events[-1]


# --- staging no pull owns -------------------------------------------------------------------------


def test_staging_of_failed_pulls_is_reclaimed_oldest_first_when_a_pull_needs_room(small_volume, make_app, hub,
                                                                                 make_gguf):
    leave_dead_staging(make_app, hub, make_gguf, "old.Q4_K_M.gguf", 3 * MiB)
    leave_dead_staging(make_app, hub, make_gguf, "newer.Q4_K_M.gguf", 3 * MiB)
    for path in (small_volume / ".staging").glob("old.*"):
        age(path, 3600)
    assert len(staging_files(small_volume)) == 4
    source = make_gguf("wanted.Q4_K_M.gguf", 3 * MiB)
    hub.add_repo("acme/wanted-GGUF", files={"wanted.Q4_K_M.gguf": source})

    events = pull(make_app().test_client(), model="acme/wanted-GGUF")

    assert events[-1]["status"] == "complete", events[-1]
    assert same_bytes(small_volume / "wanted.Q4_K_M.gguf", source)
    assert staging_files(small_volume) == ["newer.Q4_K_M.gguf.partial", "newer.Q4_K_M.gguf.partial.json"]


@pytest.fixture
def leftovers(models_dir):
    """Staging as crashed, failed and running pulls leave it, two days old unless named `young`."""
    store = ModelStore(models_dir)
    store.ensure_dirs()
    staging = Installer(store)
    staging.ensure_dirs()
    names = ["dead.gguf", "young.gguf", "noted.gguf", "set-00002-of-00002.gguf", "locked.gguf"]
    for name in names:
        for path in (staging.staging_path(name), staging.staging_path(name).with_name(name + ".partial.json")):
            path.write_bytes(b"x" * 1000)
            age(path, 0 if name == "young.gguf" else 2 * DAY_S)
    stray = models_dir / ".staging" / "crashed.gguf.partial.json.tmp"
    stray.write_bytes(b"")
    age(stray, 2 * DAY_S)
    for noted in ("noted.gguf", "set-00001-of-00002.gguf"):
        store.save_intent("acme/gone-GGUF", noted, {"model": "acme/gone-GGUF", "filename": f"sub/{noted}"})
    return store


def test_day_old_staging_no_pull_owns_is_swept_at_start(make_app, models_dir, leftovers):
    with leftovers.lock("locked.gguf"):  # a pull in another process
        make_app()

    assert staging_files(models_dir) == sorted(
        f"{name}.partial{suffix}" for name in ("locked.gguf", "noted.gguf", "set-00002-of-00002.gguf", "young.gguf")
        for suffix in ("", ".json"))


def test_day_old_staging_is_swept_while_the_proxy_runs(make_app, models_dir, leftovers):
    make_app(staging_sweep_interval_s=0.05)
    later = models_dir / ".staging" / "later.gguf.partial"
    later.write_bytes(b"x")
    age(later, 2 * DAY_S)

    wait_until(lambda: not later.exists(), 5, "the hourly sweep")
    assert "young.gguf.partial" in staging_files(models_dir)


# --- a full volume in the middle of a pull --------------------------------------------------------


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
