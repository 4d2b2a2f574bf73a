"""Resumable, ranged downloads against a misbehaving Hub: drops, resets, stalls, 5xx, 429, 200-to-Range.

Each test drives the real proxy app and the real huggingface_hub client against the fake Hub, and
checks what a user sees (the NDJSON stream, the installed file) and what went over the wire (the
fake's request log: Range headers, bytes served).
"""
from __future__ import annotations

import hashlib
import os
import sys

import pytest

from proxy.models_dir import fsutil
from tests.fakes.hub import Fault
from tests.pull_fixtures import (
    REPO, KiB, MiB, content_gets, pull, range_end, range_start, same_bytes, staging_files, top_level_ggufs,
)

FILE = "tiny.Q4_K_M.gguf"


def install_repo(hub, make_gguf, size: int):
    source = make_gguf(FILE, size)
    hub.add_repo(REPO, files={FILE: source, "README.md": b"# tiny\n"})
    return source


def assert_installed(models_dir, source, events):
    final = events[-1]
    assert final["status"] == "complete", events[-3:]
    assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert top_level_ggufs(models_dir) == [FILE]
    assert same_bytes(models_dir / FILE, source)
    assert staging_files(models_dir) == []


def assert_each_drop_resumed(gets):
    """After a dropped response, the next request for the same part asks for the byte after the last one sent."""
    for index, record in enumerate(gets):
        if record.fault != "drop" or range_start(record) + record.body_bytes > range_end(record):
            continue  # not dropped: the part's rest was shorter than the fault's cut
        following = [r for r in gets[index + 1:] if range_end(r) == range_end(record)]
        assert following, f"no retry after the drop of {record.range}"
        assert range_start(following[0]) == range_start(record) + record.body_bytes, (record.range, following[0].range)


@pytest.mark.parametrize("connections", [1, 4])
def test_pull_resumes_after_five_drops_and_a_reset(make_app, hub, make_gguf, models_dir, connections):
    source = install_repo(hub, make_gguf, 3 * MiB)
    client = make_app(pull_connections=connections, pull_chunk_bytes=512 * KiB).test_client()
    hub.faults.add(Fault.drop(after_bytes=150 * KiB, times=5), file=FILE)
    hub.faults.add(Fault.reset(after_bytes=100 * KiB, times=1), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    gets = content_gets(hub, REPO, FILE)
    assert [r.fault for r in gets].count("drop") == 5 and [r.fault for r in gets].count("reset") == 1
    assert all(r.range for r in gets), "every request for the bytes is ranged"
    assert_each_drop_resumed(gets)
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) < 1.2 * source.stat().st_size


def test_drops_on_many_parts_each_resume_their_own_range(make_app, hub, make_gguf, models_dir):
    source = install_repo(hub, make_gguf, 4 * MiB)
    client = make_app(pull_connections=8, pull_chunk_bytes=256 * KiB).test_client()
    hub.faults.add(Fault.drop(after_bytes=100 * KiB, times=12), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    gets = content_gets(hub, REPO, FILE)
    dropped_parts = {range_end(r) for r in gets if r.fault == "drop"}
    assert len(dropped_parts) >= 6, "the drops hit many different parts"
    assert_each_drop_resumed(gets)
    assert hub.bytes_served(hub.cdn_path(REPO, FILE)) < 1.2 * source.stat().st_size


def test_pull_keeps_going_while_each_attempt_gains_bytes(make_app, hub, make_gguf, models_dir):
    # More drops than PULL_MAX_RETRIES, but every attempt brings bytes: only consecutive empty attempts count.
    source = install_repo(hub, make_gguf, 600 * KiB)
    client = make_app(pull_connections=1, pull_chunk_bytes=1 * MiB, pull_max_retries=2).test_client()
    hub.faults.add(Fault.drop(after_bytes=50 * KiB, times=None), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    assert len(content_gets(hub, REPO, FILE)) >= 12


@pytest.mark.parametrize("times", [1, None], ids=["once", "always"])
def test_server_answering_200_to_range_restarts_the_file_cleanly(make_app, hub, make_gguf, models_dir, times):
    source = install_repo(hub, make_gguf, 2 * MiB)
    client = make_app(pull_connections=4, pull_chunk_bytes=256 * KiB).test_client()
    hub.faults.add(Fault.ignore_range(times=times), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    ignored = [r for r in content_gets(hub, REPO, FILE) if r.fault == "ignore_range"]
    assert ignored and all(r.status == 200 for r in ignored)
    if times == 1:
        assert len(ignored) == 1


def test_200_to_a_resumed_single_stream_rewrites_from_byte_zero(make_app, hub, make_gguf, models_dir):
    source = install_repo(hub, make_gguf, 1 * MiB)
    client = make_app(pull_connections=1, pull_chunk_bytes=4 * MiB).test_client()
    hub.faults.add(Fault.drop(after_bytes=300 * KiB, times=1), file=FILE)
    hub.faults.add(Fault.ignore_range(times=1), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    gets = content_gets(hub, REPO, FILE)
    assert [r.fault for r in gets][:2] == ["drop", "ignore_range"]
    assert range_start(gets[1]) == 300 * KiB and gets[1].status == 200


@pytest.mark.parametrize("fault", [Fault.stall(after_bytes=100 * KiB), Fault.hang()], ids=["stall", "hang"])
def test_stalled_connection_is_dropped_and_retried(make_app, hub, make_gguf, models_dir, fault):
    source = install_repo(hub, make_gguf, 512 * KiB)
    client = make_app(pull_connections=1, pull_stall_timeout_s=0.5).test_client()
    hub.faults.add(fault, file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    gets = content_gets(hub, REPO, FILE)
    assert gets[0].fault == fault.kind
    assert gets[1].started - gets[0].started >= 0.45, "the stall timeout was waited out"
    assert range_start(gets[1]) == range_start(gets[0]) + gets[0].body_bytes


def test_5xx_answers_are_retried(make_app, hub, make_gguf, models_dir):
    source = install_repo(hub, make_gguf, 512 * KiB)
    client = make_app(pull_connections=1).test_client()
    hub.faults.add(Fault.status(500, times=1), file=FILE)
    hub.faults.add(Fault.status(503, times=2), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    assert [r.status for r in content_gets(hub, REPO, FILE)][:3] == [500, 503, 503]


def test_429_is_retried_after_the_retry_after_delay(make_app, hub, make_gguf, models_dir):
    source = install_repo(hub, make_gguf, 256 * KiB)
    client = make_app(pull_connections=1, pull_backoff_base_s=0.01, pull_backoff_max_s=5.0).test_client()
    hub.faults.add(Fault.status(429, retry_after="1"), file=FILE)

    events = pull(client, model=REPO)

    assert_installed(models_dir, source, events)
    gets = content_gets(hub, REPO, FILE)
    assert gets[0].status == 429
    assert gets[1].started - gets[0].started >= 0.95, "Retry-After: 1 was honoured"


@pytest.mark.parametrize("fault", [Fault.status(503, times=None), Fault.drop(after_bytes=0, times=None),
                                   Fault.stall(after_bytes=0, times=None)], ids=["503", "drop", "stall"])
def test_consecutive_failures_end_the_pull_with_hub_unavailable(make_app, hub, make_gguf, models_dir, fault):
    install_repo(hub, make_gguf, 512 * KiB)
    client = make_app(pull_connections=1, pull_max_retries=3, pull_stall_timeout_s=0.3).test_client()
    hub.faults.add(fault, file=FILE)

    events = pull(client, model=REPO)

    assert events[0]["status"] == "starting"
    assert events[-1]["status"] == "error" and events[-1]["code"] == "hub_unavailable", events[-1]
    assert set(events[-1]) == {"status", "error", "code"}
    assert len(content_gets(hub, REPO, FILE)) == 3, "PULL_MAX_RETRIES attempts, no more"
    assert top_level_ggufs(models_dir) == []



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_written_bytes_are_handed_to_the_disk_during_the_download_on_linux(tmp_path):
    """The closing fsync of a large pull is short only when writeback starts as bytes arrive."""
    assert fsutil._SYNC_FILE_RANGE is not None
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    fd = os.open(path, os.O_RDWR)
    try:
        fsutil.start_writeback(fd, 0, 8192)  # an ordinary file: no error, nothing changes
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 8192
