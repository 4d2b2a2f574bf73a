"""Per-name lock files of the models folder: none is left behind for a name once tried, and removing them
never lets two holders in at once (issue 20: `.locks/` kept a file for every name ever tried)."""
from __future__ import annotations

import threading
import time

from proxy.models_dir.fsutil import file_lock
from proxy.models_dir.store import LOCKS
from proxy.services import services_of


def test_a_name_locked_and_released_leaves_no_lock_file(tmp_path, make_app):
    store = services_of(make_app()).store
    for name in ("a.gguf", "b-Q4_K_M.gguf", "never-installed.gguf"):
        with store.lock(name) as held:
            assert held
        with store.lock(name, shared=True):
            pass
    assert list((store.root / LOCKS).iterdir()) == []


def test_removing_lock_files_still_excludes_every_other_holder(tmp_path):
    path = tmp_path / "locks" / "x.lock"
    inside, overlaps, rounds = [0], [], 200

    def worker() -> None:
        for _ in range(rounds):
            with file_lock(path, remove=True):
                inside[0] += 1
                if inside[0] > 1:
                    overlaps.append(inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert overlaps == []
    assert not path.exists()
