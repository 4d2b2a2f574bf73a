"""GET /v1/api/models `details`: what the GGUF header says, recorded at install, scanned once otherwise."""
from __future__ import annotations

import json
import os

from gguf import GGUFValueType

from core.gguf_check import scan_gguf_header
from proxy.models_dir.details import UNKNOWN, DetailsCache
from proxy.services import services_of
from scripts.gguf_files import TensorSpec, write_gguf
from tests.pull_fixtures import hub, make_app, models_dir  # noqa: F401

GEMMA_REPO = "google/gemma-3-270m-GGUF"
# Read once with gguf.GGUFReader (20 s): gemma3.context_length 32768, general.file_type 15 (MOSTLY_Q4_K_M),
# 268098176 tensor elements (the model card's 268M).
GEMMA_DETAILS = {"architecture": "gemma3", "parameters": 268_098_176, "quantization": "Q4_K_M",
                 "context_length": 32768}
HAND_PLACED_DETAILS = {"architecture": "qwen2", "parameters": 64 * 32 + 32, "quantization": "F16",
                       "context_length": 2048}


def write_small_model(path):
    return write_gguf(path, architecture="qwen2", metadata={"general.file_type": (GGUFValueType.UINT32, 1)},
                      tensors=[TensorSpec("token_embd.weight", (64, 32)), TensorSpec("output_norm.weight", (32,))])


class CountingScan:
    def __init__(self):
        self.paths = []

    def __call__(self, path):
        self.paths.append(path)
        return scan_gguf_header(path)


def listed(client) -> dict[str, dict]:
    response = client.get("/v1/api/models")
    assert response.status_code == 200
    return {m["filename"]: m for m in response.json["models"]}


def test_pulled_gemma_lists_its_gguf_details_recorded_at_install(make_app, hub, models_dir, gemma_gguf):
    hub.add_repo(GEMMA_REPO, files={gemma_gguf.name: gemma_gguf})
    app = make_app()
    client = app.test_client()
    assert client.post("/v1/api/pull", json={"model": GEMMA_REPO, "stream": False}).status_code == 200
    scan = CountingScan()
    services_of(app).store.details = DetailsCache(scan=scan)

    model = listed(client)[gemma_gguf.name]

    assert model["details"] == GEMMA_DETAILS
    assert model["last_used"] >= model["pulled_at"]  # the pull named it; same ISO form, to the second
    assert "smoke_tested" in model and model["intact"] is True
    recorded = json.loads((models_dir / ".proxy" / "models.json").read_text())["models"]
    assert recorded[0]["details"] == GEMMA_DETAILS
    assert scan.paths == []  # answered from the record, no scan a request


def test_a_file_put_in_place_by_hand_is_scanned_once_until_it_changes(make_app, models_dir):
    app = make_app()
    client = app.test_client()
    path = write_small_model(models_dir / "hand.F16.gguf")
    scan = CountingScan()
    services_of(app).store.details = DetailsCache(scan=scan)

    assert listed(client)["hand.F16.gguf"]["details"] == HAND_PLACED_DETAILS
    assert listed(client)["hand.F16.gguf"]["details"] == HAND_PLACED_DETAILS
    assert len(scan.paths) == 1
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    listed(client)
    assert len(scan.paths) == 2  # a file replaced in place is read again


def test_a_record_without_details_and_an_unreadable_file_still_list_details(make_app, models_dir, tmp_path):
    app = make_app()
    client = app.test_client()
    write_small_model(models_dir / "old.F16.gguf")
    (models_dir / "broken.gguf").write_bytes(b"<html>not a model</html>")
    store = services_of(app).store
    store.provenance.path.parent.mkdir(parents=True, exist_ok=True)
    store.provenance.path.write_text(json.dumps({"models": [{  # as a proxy before details wrote it
        "filename": "old.F16.gguf", "repo": "acme/old", "repo_path": "old.F16.gguf", "revision": "main",
        "commit": "0" * 40, "size": (models_dir / "old.F16.gguf").stat().st_size, "sha256": None,
        "source_host": "huggingface.co", "pulled_at": "2025-01-01T00:00:00+00:00", "smoke_tested": False,
        "added_by_a_newer_version": 1}]}))

    models = listed(client)

    assert models["old.F16.gguf"]["repo"] == "acme/old"  # a field it does not know leaves the record readable
    assert models["old.F16.gguf"]["details"] == HAND_PLACED_DETAILS
    assert models["broken.gguf"]["details"] == UNKNOWN


def test_details_cache_forgets_files_no_longer_installed(tmp_path):
    scan = CountingScan()
    cache = DetailsCache(scan=scan)
    kept, dropped = write_small_model(tmp_path / "a.gguf"), write_small_model(tmp_path / "b.gguf")
    cache.details(kept), cache.details(dropped)

    cache.keep_only({kept})
    cache.details(kept), cache.details(dropped)

    assert scan.paths == [kept, dropped, dropped]
