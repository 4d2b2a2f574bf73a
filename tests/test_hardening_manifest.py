"""The reconciler survives any file and keeps the last good entries; a declared model that disappears is noticed
within the poll interval; identical entries pull once; a huge file is refused before it is parsed (issue 20,
items 6, 7 and 11)."""
from __future__ import annotations

import threading
import time

import pytest

from proxy.declared.manifest import ManifestError
from tests.manifest_files import A, B, FILE_A, FILE_B, entry, states, two_repos, write_manifest  # noqa: F401
from tests.pull_fixtures import hub, make_app, make_gguf, models_dir, slow_backend, wait_until  # noqa: F401

POLL_S = 0.2
NESTED = "{\"models\": " + "[" * 100_000 + "]" * 100_000 + "}"


def reconciler_alive() -> bool:
    return any(thread.name == "preload" and thread.is_alive() for thread in threading.enumerate())


def test_a_deeply_nested_file_neither_stops_the_reconciler_nor_the_next_good_file(make_app, two_repos, tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"models": [{"model": "%s"}]}' % A)
    client = make_app(models_manifest=str(path), manifest_poll_interval_s=POLL_S).test_client()
    wait_until(lambda: states(client).get(A, {}).get("state") == "ready", what=f"{A} ready")

    path.write_text(NESTED)
    error = wait_until(lambda: client.get("/v1/api/manifest").get_json().get("error"), what="the error reported")
    assert "nested" in error
    assert states(client)[A]["state"] == "ready", "the last good entries stay in force"
    seen = {client.get("/v1/api/manifest").get_json()["checked_at"]}
    wait_until(lambda: seen.add(client.get("/v1/api/manifest").get_json()["checked_at"]) or len(seen) > 3,
               what="the reconciler polling past the bad file")
    assert reconciler_alive()

    path.write_text('{"models": [{"model": "%s"}, {"model": "%s"}]}' % (A, B))
    wait_until(lambda: states(client).get(B, {}).get("state") == "ready", what=f"{B} pulled from the next good file")
    assert client.get("/v1/api/manifest").get_json()["error"] is None


def test_a_deeply_nested_file_at_start_names_the_problem(make_app, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(NESTED)
    with pytest.raises(ManifestError, match="MODELS_MANIFEST: nested too deeply"):
        make_app(models_manifest=str(path))


def test_a_50_mb_file_is_refused_at_once(make_app, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  - model: acme/alpha-GGUF\n" + "# a comment that goes on and on\n" * 1_700_000)
    started = time.monotonic()
    with pytest.raises(ManifestError, match="larger than 1024 KiB"):
        make_app(models_manifest=str(path))
    assert time.monotonic() - started < 2.0


def test_a_declared_model_that_disappears_is_noticed_and_pulled_again(make_app, hub, two_repos, tmp_path, models_dir):
    path = write_manifest(tmp_path / "m.yaml", entry(A))
    with slow_backend(0.0) as backend:
        client = make_app(models_manifest=path, manifest_poll_interval_s=POLL_S, backend_url=backend).test_client()
        wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")

        assert client.delete("/v1/api/delete", json={"filename": FILE_A}).status_code == 200
        hub.throttle_bps = 256 * 1024  # two seconds to pull it again: time to see it not ready
        noticed = wait_until(lambda: states(client)[A]["state"] != "ready" or None, timeout_s=10 * POLL_S,
                             what="the entry leaving ready")
        assert noticed
        readyz = client.get("/readyz")
        assert readyz.status_code == 503 and [m["model"] for m in readyz.get_json()["not_ready"]] == [A]

        wait_until(lambda: client.get("/readyz").status_code == 200, timeout_s=20, what="pulled again")
        assert (models_dir / FILE_A).read_bytes() == two_repos[FILE_A].read_bytes()


def test_identical_entries_are_one_pull(make_app, hub, two_repos, tmp_path):
    path = write_manifest(tmp_path / "m.yaml", *[entry(A)] * 50)
    client = make_app(models_manifest=path).test_client()
    wait_until(lambda: all(m["state"] == "ready" for m in client.get("/v1/api/manifest").get_json()["models"]),
               what="every entry ready")
    hub.clear_log()
    before = client.get("/v1/api/manifest").get_json()["reconciled_at"]

    assert client.post("/v1/api/manifest/sync").status_code == 202
    wait_until(lambda: client.get("/v1/api/manifest").get_json()["reconciled_at"] != before, what="the sync")

    models = client.get("/v1/api/manifest").get_json()["models"]
    assert len(models) == 50 and {m["state"] for m in models} == {"ready"}
    assert len(hub.requests()) <= 3, f"{len(hub.requests())} Hub calls for one declaration"
