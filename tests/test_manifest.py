"""MODELS_MANIFEST: declared models reconciled through the pull service, their states, /readyz, pins."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from proxy.declared.manifest import ManifestError
from tests.manifest_files import A, B, FILE_A, FILE_B, entry, states, two_repos, write_manifest  # noqa: F401
from tests.pull_fixtures import hub, make_app, make_gguf, models_dir, slow_backend, wait_until  # noqa: F401


def settled(client, count: int = 2) -> dict[str, dict]:
    def done():
        now = states(client)
        return now if sum(m["state"] in ("ready", "failed") for m in now.values()) >= count else None

    return wait_until(done, timeout_s=20, what="every entry settled")


def test_readyz_names_both_entries_until_they_are_installed(make_app, hub, two_repos, tmp_path, models_dir):
    hub.throttle_bps = 512 * 1024  # a second a file: the first answers come while they are pulled
    path = write_manifest(tmp_path / "m.yaml", entry(A), entry(f"{B}:Q4_K_M"))
    with slow_backend(0.0) as backend:
        client = make_app(models_manifest=path, backend_url=backend, pull_connections=1).test_client()
        started = time.monotonic()
        answer = client.get("/readyz")
        assert time.monotonic() - started < 1.0
        assert answer.status_code == 503 and answer.get_json()["backend"] is True
        assert {m["model"] for m in answer.get_json()["not_ready"]} == {A, f"{B}:Q4_K_M"}
        assert {m["state"] for m in states(client).values()} <= {"queued", "pulling"}
        wait_until(lambda: "pulling" in {m["state"] for m in states(client).values()}, what="a pull to run")
        final = settled(client)
        assert client.get("/readyz").status_code == 200 and client.get("/readyz").get_json() == {"status": "ready"}
    view = client.get("/v1/api/manifest").get_json()
    assert view["ready"] is True
    assert final[A]["filename"] == FILE_A and final[A]["sha256"] == hashlib.sha256(
        two_repos[FILE_A].read_bytes()).hexdigest() and final[A]["revision"] == hub.commit_sha(A)
    assert (models_dir / FILE_B).read_bytes() == two_repos[FILE_B].read_bytes()


def test_readyz_is_503_without_a_backend_even_when_every_entry_is_ready(make_app, two_repos, tmp_path):
    client = make_app(models_manifest=write_manifest(tmp_path / "m.yaml", entry(A))).test_client()
    settled(client, 1)
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.get_json() == {"status": "not_ready", "backend": False,
                                                              "not_ready": []}


def test_a_wrong_sha256_pin_fails_that_entry_before_a_byte_and_keeps_the_other(make_app, hub, two_repos, tmp_path,
                                                                                 models_dir):
    path = write_manifest(tmp_path / "m.yaml", entry(A, sha256="0" * 64), entry(B))
    client = make_app(models_manifest=path).test_client()
    final = settled(client)
    assert final[A]["state"] == "failed" and final[A]["code"] == "checksum_mismatch" and "0" * 64 in final[A]["error"]
    assert final[B]["state"] == "ready"
    assert not (models_dir / FILE_A).exists()
    assert hub.bytes_served(hub.cdn_path(A, FILE_A)) == 0
    assert client.get("/v1/api/manifest").get_json()["ready"] is False


def test_a_pin_matching_the_installed_file_fetches_no_byte(make_app, hub, two_repos, tmp_path, models_dir):
    sha = hashlib.sha256(two_repos[FILE_A].read_bytes()).hexdigest()
    path = write_manifest(tmp_path / "m.yaml", entry(A, filename=FILE_A, sha256=sha, revision=hub.commit_sha(A)))
    settled(make_app(models_manifest=path).test_client(), 1)
    hub.clear_log()
    client = make_app(models_manifest=path).test_client()
    assert settled(client, 1)[A]["state"] == "ready"
    assert hub.requests_to("/cdn-lfs/") == [] and hub.requests_to(f"/{A}/resolve/", method="GET") == []


def test_a_locked_entry_keeps_the_pinned_bytes_when_the_hub_rewrites_the_file(make_app, hub, two_repos, tmp_path,
                                                                               models_dir, make_gguf):
    pinned = two_repos[FILE_A].read_bytes()
    old_commit = hub.commit_sha(A)
    path = write_manifest(tmp_path / "m.yaml", entry(A, filename=FILE_A, revision=old_commit,
                                                     sha256=hashlib.sha256(pinned).hexdigest()))
    settled(make_app(models_manifest=path).test_client(), 1)
    # The same name, new bytes in a new commit, and the old commit gone (history squashed).
    hub.add_commit(A, {FILE_A: make_gguf("new-" + FILE_A, 512 * 1024)})
    del hub.repo(A).commits[old_commit]
    client = make_app(models_manifest=path).test_client()
    final = settled(client, 1)[A]
    assert final["state"] == "ready" and final["code"] == "revision_not_found" and final["revision"] == old_commit
    assert (models_dir / FILE_A).read_bytes() == pinned
    # A sha256 pin on the branch: the Hub's new bytes are refused before a byte, and reported.
    path = write_manifest(tmp_path / "m2.yaml", entry(A, filename=FILE_A, sha256=hashlib.sha256(pinned).hexdigest()))
    final = settled(make_app(models_manifest=path).test_client(), 1)[A]
    assert final["state"] == "ready" and final["code"] == "checksum_mismatch"
    assert (models_dir / FILE_A).read_bytes() == pinned


def test_the_configmap_symlink_swap_is_picked_up_without_a_restart(make_app, hub, two_repos, tmp_path, models_dir):
    # The kubelet's layout: models.yaml -> ..data/models.yaml, ..data -> ..<timestamp>; an update swaps ..data.
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    write_manifest(mount / "..v1" / "models.yaml", entry(A))
    (mount / "..data").symlink_to("..v1")
    (mount / "models.yaml").symlink_to("..data/models.yaml")
    client = make_app(models_manifest=str(mount / "models.yaml"), manifest_poll_interval_s=0.2).test_client()
    assert list(settled(client, 1)) == [A]
    (mount / "..v2").mkdir()
    write_manifest(mount / "..v2" / "models.yaml", entry(A), entry(B))
    (mount / "..data_tmp").symlink_to("..v2")
    os.replace(mount / "..data_tmp", mount / "..data")
    assert settled(client, 2)[B]["state"] == "ready"
    assert (models_dir / FILE_B).is_file()


def test_sync_is_guarded_and_retries_a_failed_entry(make_app, hub, make_gguf, tmp_path, models_dir):
    client = make_app(models_manifest=write_manifest(tmp_path / "m.yaml", entry(A)), api_key="k3y",
                      manifest_poll_interval_s=0.05).test_client()
    assert settled(client, 1)[A]["code"] == "repo_not_found"
    hub.add_repo(A, files={FILE_A: make_gguf(FILE_A, 64 * 1024)})
    seen = {client.get("/v1/api/manifest").get_json()["checked_at"]}
    wait_until(lambda: seen.add(client.get("/v1/api/manifest").get_json()["checked_at"]) or len(seen) > 3,
               what="three polls of the file")
    assert states(client)[A]["state"] == "failed"  # not retried in a loop
    assert client.post("/v1/api/manifest/sync").status_code == 401
    answer = client.post("/v1/api/manifest/sync", headers={"Authorization": "Bearer k3y"})
    assert answer.status_code == 202 and answer.get_json() == {"status": "syncing"}
    wait_until(lambda: states(client)[A]["state"] == "ready", what="the entry to be pulled on sync")


@pytest.mark.parametrize("text, message", [
    ("models:\n  - model: acme/a\n  - model: acme/b\n    sha256: 3f2a\n", "models[1].sha256: expected 64 hex digits"),
    ("models:\n  - filename: a.gguf\n", "models[0].model: required"),
    ("models:\n  - model: acme/a\n    verify: maybe\n", "models[0].verify:"),
    ("models: [\n", "not valid YAML"),
])
def test_a_malformed_manifest_stops_the_app_naming_entry_and_field(make_app, tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_app(models_manifest=str(path))
