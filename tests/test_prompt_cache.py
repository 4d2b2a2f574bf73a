"""The prompt cache's tiers without a model (docs/api.md, Prompt cache): least recently used out of memory within
its budget and into the disk tier, files checked before use, the disk budget, and keys that tell models and
layouts apart. tests/test_prompt_cache_gemma.py restores real states."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from core.prompt_cache_dir import cache_bytes, cache_files, reclaim
from server.engine.prompt_cache import BLOCK_TOKENS, PromptCache, common_prefix
from server.engine.prompt_cache_disk import DiskTier
from server.residency.cache_key import cache_key
from server.residency.discovery import scan_models
from server.settings import Settings

KEY = "sha256:aaaa|n_ctx=512"


def _tokens(start: int, n: int = 2 * BLOCK_TOKENS) -> tuple[int, ...]:
    return tuple(range(start, start + n))


def test_memory_keeps_the_most_recently_used_within_its_budget_and_moves_the_rest_to_disk(tmp_path):
    disk = DiskTier(str(tmp_path), max_bytes=1 << 20)
    cache = PromptCache(max_bytes=3000, disk=disk)
    for i in range(3):
        cache.put(KEY, _tokens(1000 * i), exact=False, state=bytes([i]) * 1000)
    # A lookup uses entry 0, so entry 1 is now the least recently used and goes first.
    found = cache.best(KEY, list(_tokens(0)) + [7], limit=10_000)
    assert found.tier == "memory" and cache.state_of(KEY, found) == bytes([0]) * 1000
    cache.put(KEY, _tokens(3000), exact=False, state=b"3" * 1000)
    disk.drain()

    assert cache.to_dict()["memory"] == {"bytes": 3000, "entries": 3, "limit_bytes": 3000}
    assert cache.best(KEY, list(_tokens(1000)), limit=10_000).tier == "disk"
    for start in (0, 2000, 3000):
        assert cache.best(KEY, list(_tokens(start)), limit=10_000).tier == "memory"


def test_memory_shrinks_to_what_loaded_models_leave(tmp_path):
    cache = PromptCache(max_bytes=10_000, disk=None)
    cache.put(KEY, _tokens(0), exact=False, state=b"x" * 4000)
    cache.put(KEY, _tokens(5000), exact=False, state=b"y" * 4000)
    cache.set_room(5000)  # a model was loaded: MAX_MODEL_MEMORY less its estimate
    assert cache.to_dict()["memory"]["bytes"] == 4000
    assert cache.best(KEY, list(_tokens(0)), limit=10_000) is None  # the older one went (no disk tier)
    assert cache.best(KEY, list(_tokens(5000)), limit=10_000) is not None


def test_an_exact_entry_serves_only_its_whole_length_a_plain_one_any_prefix():
    cache = PromptCache(max_bytes=1 << 20)
    cache.put("exact", _tokens(0, 200), exact=True, state=b"s")
    cache.put("plain", _tokens(0, 200), exact=False, state=b"s")
    shorter = list(_tokens(0, 150)) + [-1, -2]
    longer = list(_tokens(0, 200)) + [9, 9]
    assert cache.best("exact", shorter, limit=len(shorter) - 1) is None
    assert cache.best("exact", longer, limit=len(longer) - 1).n == 200
    assert cache.best("plain", shorter, limit=len(shorter) - 1).n == 150
    assert cache.best("plain", list(_tokens(0, 200)), limit=199).n == 199  # one token left to evaluate
    assert cache.best("another model", longer, limit=len(longer) - 1) is None


def test_common_prefix_counts_across_blocks():
    a = list(range(300))
    assert common_prefix(a, a[:130] + [-1] + a[131:]) == 130
    assert common_prefix(a, a) == 300 and common_prefix(a, []) == 0


def test_a_written_entry_is_read_back_by_a_new_process_and_counted(tmp_path):
    DiskTier(str(tmp_path), 1 << 20).write(KEY, _tokens(0), True, b"state" * 100)
    disk = DiskTier(str(tmp_path), 1 << 20)  # as a restarted backend sees the folder
    (entry,) = disk.entries(KEY)
    assert entry.tokens == _tokens(0) and entry.exact
    assert disk.read(KEY, entry) == b"state" * 100
    assert cache_bytes(tmp_path) == entry.size == disk.bytes_held()
    assert not list(tmp_path.glob(".prompt-cache/*/.*.tmp"))  # the temporary name was renamed


@pytest.mark.parametrize("damage", ["flip a state byte", "truncate", "another model's", "another format"])
def test_a_damaged_or_foreign_file_is_dropped_with_a_log_line_and_never_read(tmp_path, caplog, damage):
    writer = DiskTier(str(tmp_path), 1 << 20)
    writer.write(KEY, _tokens(0), False, b"state" * 100)
    (path,) = tmp_path.glob(".prompt-cache/*/*.kv")
    data = bytearray(path.read_bytes())
    if damage == "flip a state byte":
        data[-3] ^= 0xFF
    elif damage == "truncate":
        data = data[:-10]
    elif damage == "another model's":
        other = DiskTier(str(tmp_path / "other"), 1 << 20)
        other.write("sha256:bbbb|n_ctx=512", _tokens(0), False, b"state" * 100)
        (foreign,) = (tmp_path / "other").glob(".prompt-cache/*/*.kv")
        data = bytearray(foreign.read_bytes())
    else:
        data[:8] = b"NOTMAGIC"
    path.write_bytes(bytes(data))

    disk = DiskTier(str(tmp_path), 1 << 20)
    with caplog.at_level(logging.WARNING):
        entries = disk.entries(KEY)
        states = [disk.read(KEY, entry) for entry in entries]
    assert states in ([], [None])  # refused from its header, or from its checksum when read
    assert not path.exists() and disk.entries(KEY) == []
    assert "prompt cache entry" in caplog.text and "dropped" in caplog.text


def test_the_disk_budget_removes_the_least_recently_used_files_first(tmp_path):
    disk = DiskTier(str(tmp_path), max_bytes=10_000)  # three entries of about 3.1 kB fit, four do not
    past = time.time() - 100
    for i in range(3):
        disk.write(KEY, _tokens(1000 * i), False, b"s" * 2500)
        path = next(e.path for e in disk.entries(KEY) if e.tokens == _tokens(1000 * i))
        os.utime(path, (past + i, past + i))  # written in this order, whatever the clock's resolution
    disk.read(KEY, next(e for e in disk.entries(KEY) if e.tokens == _tokens(0)))  # a hit: used last
    disk.write(KEY, _tokens(3000), False, b"s" * 2500)

    kept = {e.tokens[0] for e in disk.entries(KEY)}
    assert kept == {0, 2000, 3000} and cache_bytes(tmp_path) <= 10_000
    assert reclaim(tmp_path, 0) > 0 and cache_files(tmp_path) == []


def test_the_key_tells_files_and_kv_layouts_apart_and_reads_the_recorded_sha256(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"GGUF" + b"a" * 100)
    (tmp_path / "b.gguf").write_bytes(b"GGUF" + b"a" * 100)  # the same bytes, another file
    models = scan_models(str(tmp_path))
    settings = Settings(models_dir=str(tmp_path))
    a = cache_key(settings, models["a"], 512)
    assert a != cache_key(settings, models["b"], 512)
    assert a != cache_key(settings, models["a"], 1024)
    assert a != cache_key(Settings(models_dir=str(tmp_path), parallel=2), models["a"], 512)
    assert a == cache_key(settings, models["a"], 512)

    (tmp_path / ".proxy").mkdir()
    record = '{"models": [{"filename": "%s", "sha256": "%s", "size": 104}]}'
    (tmp_path / ".proxy" / "models.json").write_text(record % ("a.gguf", "ab" * 32))
    assert cache_key(settings, models["a"], 512).startswith("sha256:" + "ab" * 32)
    (tmp_path / ".proxy" / "models.json").write_text(record.replace("104", "5") % ("a.gguf", "ab" * 32))
    assert cache_key(settings, models["a"], 512) == a  # a record of other bytes is not trusted


def test_settings_take_sizes_and_refuse_what_is_not_one():
    settings = Settings(prompt_cache_bytes="512MiB", prompt_cache_disk_bytes="0")
    assert settings.prompt_cache_memory_bytes == 512 << 20 and settings.prompt_cache_disk_max_bytes == 0
    with pytest.raises(ValueError):
        Settings(prompt_cache_bytes="lots")


def test_retention_helpers_see_only_entry_files(tmp_path: Path):
    folder = tmp_path / ".prompt-cache" / "k"
    folder.mkdir(parents=True)
    (folder / "x.kv").write_bytes(b"1" * 10)
    (folder / ".x.kv.1.tmp").write_bytes(b"1" * 99)  # a writer's temporary file
    assert cache_bytes(tmp_path) == 10


def test_metrics_export_hits_misses_and_bytes_a_tier_from_the_backends_stats():
    from prometheus_client import CollectorRegistry, generate_latest

    from proxy.metrics import BackendServingCollector
    from tests.metrics_text import families, sample

    cache = PromptCache(max_bytes=1 << 20)
    cache.put(KEY, _tokens(0), exact=True, state=b"s" * 500)
    cache.count("memory", 128)
    cache.count(None, 0)
    registry = CollectorRegistry()
    registry.register(BackendServingCollector(lambda: {"prompt_cache": cache.to_dict()}))
    found = families(generate_latest(registry).decode())
    assert sample(found, "proxy_backend_prompt_cache_hits", "proxy_backend_prompt_cache_hits_total",
                  tier="memory") == 1
    assert sample(found, "proxy_backend_prompt_cache_hits", "proxy_backend_prompt_cache_hits_total", tier="disk") == 0
    assert sample(found, "proxy_backend_prompt_cache_cached_tokens", "proxy_backend_prompt_cache_cached_tokens_total",
                  tier="memory") == 128
    assert sample(found, "proxy_backend_prompt_cache_misses", "proxy_backend_prompt_cache_misses_total") == 1
    assert sample(found, "proxy_backend_prompt_cache_bytes", tier="memory") == 500
    assert sample(found, "proxy_backend_prompt_cache_bytes", tier="disk") == 0


def test_with_no_memory_tier_entries_go_to_disk_and_come_back_from_it(tmp_path):
    disk = DiskTier(str(tmp_path), 1 << 20)
    cache = PromptCache(max_bytes=0, disk=disk)  # PROMPT_CACHE_BYTES=0
    cache.put(KEY, _tokens(0), exact=False, state=b"s" * 100)
    disk.drain()
    found = cache.best(KEY, list(_tokens(0)) + [1], limit=200)
    assert found.tier == "disk" and cache.state_of(KEY, found) == b"s" * 100
    disk.drain()
    assert len(disk.entries(KEY)) == 1 and cache.to_dict()["memory"]["bytes"] == 0


def test_a_writers_temporary_file_left_behind_is_removed_once_stale(tmp_path):
    folder = tmp_path / ".prompt-cache" / "k"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".a.kv.1.tmp", folder / ".b.kv.2.tmp"
    stale.write_bytes(b"1")
    fresh.write_bytes(b"1")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    reclaim(tmp_path, 1 << 30)
    assert not stale.exists() and fresh.exists()  # a live writer's file stays
