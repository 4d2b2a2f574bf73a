"""The proxy as a real gunicorn process: a pull resumes after SIGKILL and after SIGTERM mid-file, two
processes sharing MODELS_DIR download a file once, and the HF token never reaches the process's output.

Every process runs `gunicorn -c proxy/gunicorn.conf.py "proxy.app:create_app()"` configured only through
the environment; the fake Hub is throttled so a download is caught mid-file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.pull_fixtures import (
    REPO, TOKEN, KiB, MiB, content_gets, range_start, same_bytes, staging_files, top_level_ggufs, wait_until,
)
from tests.proxy_processes import HttpStream, proxy_process

FILE = "tiny.Q4_K_M.gguf"


@dataclass
class DirWatcher:
    """Snapshots MODELS_DIR every few milliseconds: (visible top-level entries, staging files)."""

    models_dir: Path
    snapshots: list[tuple[list[str], list[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "DirWatcher":
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(OSError):
                visible = sorted(p.name for p in self.models_dir.iterdir() if not p.name.startswith("."))
                self.snapshots.append((visible, staging_files(self.models_dir)))


def saved_progress(models_dir: Path) -> dict | None:
    """The transfer's saved per-part progress for FILE, or None while there is none."""
    try:
        return json.loads((models_dir / ".staging" / f"{FILE}.partial.json").read_text())
    except (OSError, ValueError):
        return None


def settle(hub) -> int:
    """Wait until the fake has ended every response of the stopped process, then lift the throttle;
    returns how many requests for FILE's bytes the first run made."""
    wait_until(lambda: all(r.done for r in hub.requests()), what="the stopped process's responses to end")
    hub.throttle_bps = None
    return len(content_gets(hub, REPO, FILE))


def assert_secret_kept(log_path: Path) -> None:
    output = log_path.read_text(errors="replace")
    assert output, "the process wrote its log"
    assert TOKEN not in output and TOKEN[3:] not in output


def assert_never_visible_before_complete(watcher: DirWatcher) -> None:
    """Partial bytes live only in the hidden staging folder; the final name appears only by the rename that
    ends the pull, never beside a staging file."""
    assert all(visible in ([], [FILE]) for visible, _ in watcher.snapshots), "nothing else visible in MODELS_DIR"
    seen = [(visible, staged) for visible, staged in watcher.snapshots if visible]
    assert all(not any(name.startswith(FILE) for name in staged) for _, staged in seen), seen[:3]
    assert any(staged for _, staged in watcher.snapshots), "the watcher saw the download in staging"


def test_pull_resumes_every_part_after_sigkill_mid_file(hub, make_gguf, models_dir, tmp_path):
    size, chunk = 8 * MiB, 1 * MiB
    source = make_gguf(FILE, size)
    hub.add_repo(REPO, files={FILE: source}, private=True, readers={TOKEN})
    hub.throttle_bps = 256 * KiB  # per connection: 8 connections take 4 s for the file
    log_path = tmp_path / "proxy.log"

    with DirWatcher(models_dir) as watcher:
        with proxy_process(models_dir, hub, log_path, PULL_CONNECTIONS="8", PULL_CHUNK_BYTES=str(chunk)) as proxy:
            answer = requests.post(f"{proxy.url}/v1/api/pull", json={"model": REPO, "async": True}, timeout=10)
            assert answer.status_code == 202
            wait_until(lambda: (p := saved_progress(models_dir)) and sum(p["done"]) >= size // 4
                       and all(p["done"]), what="all 8 parts under way")
            os.killpg(proxy.proc.pid, signal.SIGKILL)
            proxy.proc.wait(10)
        saved = saved_progress(models_dir)
        assert top_level_ggufs(models_dir) == []
        assert staging_files(models_dir) == [FILE + ".partial", FILE + ".partial.json"]
        assert len(saved["done"]) == 8 and all(0 < done < chunk for done in saved["done"]), saved
        first_run = settle(hub)

        with proxy_process(models_dir, hub, log_path) as proxy:
            events = HttpStream(proxy, model=REPO).finish()

    assert events[-1]["status"] == "complete", events[-2:]
    assert events[-1]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert same_bytes(models_dir / FILE, source)
    second_run = content_gets(hub, REPO, FILE)[first_run:]
    assert sorted(range_start(r) for r in second_run) == [i * chunk + done for i, done in enumerate(saved["done"])], \
        ("each part from where it stopped", [(r.range, r.status, r.body_bytes) for r in second_run])
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) < 1.2 * size
    assert_never_visible_before_complete(watcher)
    assert staging_files(models_dir) == []
    assert_secret_kept(log_path)


def test_pull_resumes_after_sigterm_mid_file_and_the_stream_says_so(hub, make_gguf, models_dir, tmp_path):
    size = 4 * MiB
    source = make_gguf(FILE, size)
    hub.add_repo(REPO, files={FILE: source}, private=True, readers={TOKEN})
    hub.throttle_bps = 1 * MiB  # one connection: 4 s for the file
    log_path = tmp_path / "proxy.log"

    with DirWatcher(models_dir) as watcher:
        with proxy_process(models_dir, hub, log_path, PULL_CONNECTIONS="1") as proxy:
            stream = HttpStream(proxy, model=REPO)
            wait_until(lambda: (p := saved_progress(models_dir)) and p["done"][0] >= 1 * MiB, what="1 MiB saved")
            signalled = time.monotonic()
            os.killpg(proxy.proc.pid, signal.SIGTERM)
            proxy.proc.wait(15)
            stopped_s = time.monotonic() - signalled
            interrupted = stream.finish()
        saved = saved_progress(models_dir)
        first_run = settle(hub)

        with proxy_process(models_dir, hub, log_path, PULL_CONNECTIONS="1") as proxy:
            # Nobody asks again: the restarted proxy resumes the interrupted pull by itself.
            def finished_pulls():
                pulls = requests.get(f"{proxy.url}/v1/api/pulls", timeout=10).json()["pulls"]
                return pulls if pulls and all(p["status"] in ("complete", "error") for p in pulls) else None

            pulls = wait_until(finished_pulls, what="the pull to resume and finish by itself")
            events = HttpStream(proxy, model=REPO).finish()

    assert stopped_s < 5, "SIGTERM stops a running pull at once instead of waiting out the grace period"
    assert interrupted[-1]["status"] == "error" and interrupted[-1]["code"] == "pull_stopped", interrupted[-2:]
    assert saved is not None and 1 * MiB <= saved["done"][0] < size
    assert [(p["filename"], p["status"]) for p in pulls] == [(FILE, "complete")]
    assert events == [{**events[-1], "status": "complete", "cached": True}]
    assert list((models_dir / ".proxy" / "pending").glob("*.json")) == [], "no note left once it completed"
    assert same_bytes(models_dir / FILE, source)
    assert [range_start(r) for r in content_gets(hub, REPO, FILE)[first_run:]] == [saved["done"][0]]
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) < 1.2 * size
    assert_never_visible_before_complete(watcher)
    assert_secret_kept(log_path)


def test_two_processes_sharing_models_dir_download_a_file_once(hub, make_gguf, models_dir, tmp_path):
    size = 2 * MiB
    source = make_gguf(FILE, size)
    hub.add_repo(REPO, files={FILE: source}, private=True, readers={TOKEN})
    hub.throttle_bps = 512 * KiB  # per connection: 2 connections take 2 s for the file
    env = {"PULL_CONNECTIONS": "2", "PULL_CHUNK_BYTES": str(1 * MiB)}

    with proxy_process(models_dir, hub, tmp_path / "a.log", **env) as first, \
            proxy_process(models_dir, hub, tmp_path / "b.log", **env) as second:
        leading = HttpStream(first, model=REPO)
        wait_until(lambda: saved_progress(models_dir), what="the first process to start downloading")
        waiting = HttpStream(second, model=REPO)
        leading_events, waiting_events = leading.finish(), waiting.finish()

    assert leading_events[-1]["status"] == "complete"
    assert waiting_events[-1]["status"] == "complete"
    assert waiting_events[-1]["sha256"] == leading_events[-1]["sha256"]
    assert any(e["status"] == "queued" for e in waiting_events), "the second process waited for the lock"
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) == size, "one download's worth of bytes"
    assert len(content_gets(hub, REPO, FILE)) == 2
    assert same_bytes(models_dir / FILE, source)
    assert_secret_kept(tmp_path / "a.log")
    assert_secret_kept(tmp_path / "b.log")
