"""Pushes that survive what real registries do: big blobs in PATCH chunks, a dropped connection or a 503
mid-upload (a fault relay in front of the real registry; a dropped chunk goes on in its session), a model
held while it is pushed, metrics, and a cross-repository mount instead of an upload."""
from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

import pytest

from proxy.services import services_of
from scripts.gguf_files import sha256_file
from tests.fakes.relay import FaultRelay
from tests.helpers import unique
from tests.pull_fixtures import REPO, KiB, ndjson, pull
from scripts.registry import DMR_GGUF, TITLE
from tests.registry import registry  # noqa: F401 - registry: the fixture
from tests.registry_clients import PASSWORD, USER, auth_file, basic_entry, install, push

CHUNK = 64 * KiB


@pytest.fixture
def make_gguf(make_gguf):
    """make_gguf(name, size) with content new on every call: the module's registry keeps the blobs of earlier
    tests and runs, and a push or publish of bytes it already holds would not upload them again."""
    def make(name: str, size: int = 64 * KiB):
        return make_gguf(name, size, seed=uuid.uuid4().int >> 64)
    return make


def registry_requests(registry, method: str, repo: str, path: str = "/blobs/uploads/") -> list[str]:
    """The requests the registry's access log shows for `repo` (what reached the registry, not the relay)."""
    log = (registry.storage.parent / "registry.log").read_text(errors="replace")
    return [unquote(url) for url in re.findall(rf'"{method} (/v2/{re.escape(repo)}{re.escape(path)}[^ "]*)', log)]


def relay_for(registry, failures) -> FaultRelay:
    host, port = registry.host.split(":")
    return FaultRelay((host, int(port)), path_contains="/nothing/", failures=failures)


def metric(client, line_start: str) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_blob_over_push_chunk_bytes_goes_up_in_patch_chunks_and_pulls_back_the_same(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none"),
                      push_chunk_bytes=CHUNK).test_client()
    name = unique("chunky")
    sums = install(hub, client, make_gguf, {f"{name}-Q4_0.gguf": 200 * KiB})
    target = f"oci://{registry.host}/ai/{name}:v1"
    assert push(client, model=f"{name}-Q4_0", target=target)[-1]["status"] == "complete"
    assert len(registry_requests(registry, "PATCH", f"ai/{name}")) == 4  # 64 + 64 + 64 + 8 KiB
    closing = registry_requests(registry, "PUT", f"ai/{name}")
    assert len(closing) == 2, closing  # the chunked layer's closing PUT and the small config's one PUT
    client.delete("/v1/api/delete", json={"model": f"{name}-Q4_0"})
    assert pull(client, model=target)[-1]["sha256"] == sums[f"{name}-Q4_0.gguf"]


def push_through(relay, make_app, hub, make_gguf, tmp_path, name: str):
    """A 200 KiB model installed and pushed in CHUNK chunks through `relay` to ai/<name>:v1, the push
    complete with progress that never goes back; (client, target, the installed sha256)."""
    client = make_app(insecure_registries=(relay.host,), docker_config=str(tmp_path / "none"),
                      push_chunk_bytes=CHUNK).test_client()
    sha256 = install(hub, client, make_gguf, {f"{name}-Q4_0.gguf": 200 * KiB})[f"{name}-Q4_0.gguf"]
    target = f"oci://{relay.host}/ai/{name}:v1"
    lines = push(client, model=f"{name}-Q4_0", target=target)
    assert lines[-1]["status"] == "complete", lines[-1]
    completed = [line["completed"] for line in lines[:-1]]
    assert completed == sorted(completed) and completed[-1] == lines[-2]["total"], completed
    return client, target, sha256


def pulls_back(client, name: str, target: str) -> str:
    """The sha256 of the pushed model pulled back with oci:// after deleting it here."""
    client.delete("/v1/api/delete", json={"model": f"{name}-Q4_0"})
    return pull(client, model=target)[-1]["sha256"]


def test_a_dropped_connection_and_a_503_restart_the_upload_and_the_push_completes(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    name = unique("flaky")
    failures = [("PATCH", f"/ai/{name}/blobs/uploads/", "drop"), ("PUT", f"/ai/{name}/blobs/uploads/", "503")]
    with relay_for(registry, failures) as relay:
        client, target, sha256 = push_through(relay, make_app, hub, make_gguf, tmp_path, name)
        assert relay.failed == ["PATCH drop", "PUT 503"]
        assert len(registry_requests(registry, "POST", f"ai/{name}")) >= 3, "each failure started a new session"
        assert metric(client, 'proxy_pushes_total{code="",outcome="complete"}') == 1
        assert metric(client, "proxy_push_bytes_total") > 200 * KiB, "the resent bytes count too"
        assert pulls_back(client, name, target) == sha256


def test_a_chunk_dropped_mid_blob_goes_on_from_where_the_session_stands_not_from_byte_zero(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    name = unique("resumed")
    failures = [("PATCH", f"/ai/{name}/blobs/uploads/", "drop", 1)]  # the second chunk's PATCH
    with relay_for(registry, failures) as relay:
        client, target, sha256 = push_through(relay, make_app, hub, make_gguf, tmp_path, name)
        assert relay.failed == ["PATCH drop"]
        sessions = registry_requests(registry, "POST", f"ai/{name}")
        assert len(sessions) == 2, "a session for the layer, one for the config"
        assert len(registry_requests(registry, "GET", f"ai/{name}")) >= 1, "the upload's status was asked"
        assert len(registry_requests(registry, "PATCH", f"ai/{name}")) == 4, "each chunk reached it once"
        assert metric(client, "proxy_push_bytes_total") < 300 * KiB, "not the whole blob again"
        assert pulls_back(client, name, target) == sha256


def test_a_registry_failing_every_attempt_ends_with_hub_unavailable_naming_the_attempts(
        registry, make_app, hub, make_gguf, tmp_path):
    name = unique("down")
    with relay_for(registry, [("PUT", f"/ai/{name}/blobs/uploads/", "503")] * 10) as relay:
        client = make_app(insecure_registries=(relay.host,), docker_config=str(tmp_path / "none"),
                          pull_max_retries=3).test_client()
        install(hub, client, make_gguf, {f"{name}-Q4_0.gguf": 64 * KiB})
        response = client.post("/v1/api/push", json={"model": f"{name}-Q4_0",
                                                      "target": f"oci://{relay.host}/ai/{name}:v1", "stream": False})
        body = response.get_json()
        assert response.status_code == 502 and body["code"] == "hub_unavailable", body
        assert "HTTP 503" in body["error"] and "after 3 attempts" in body["error"], body
        assert len(relay.failed) == 3
        assert metric(client, 'proxy_pushes_total{code="hub_unavailable",outcome="error"}') == 1


def test_a_model_being_pushed_cannot_be_deleted_or_evicted_and_a_busy_one_is_not_pushed(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    repo = unique("ai/held")
    with relay_for(registry, [("PUT", f"/{repo}/blobs/uploads/", "wait")]) as relay:
        app = make_app(insecure_registries=(relay.host,), docker_config=str(tmp_path / "none"))
        client = app.test_client()
        install(hub, client, make_gguf, {"held-Q4_0.gguf": 64 * KiB})
        response = client.post("/v1/api/push", json={"model": "held-Q4_0", "target": f"oci://{relay.host}/{repo}:v1"},
                               buffered=False)
        assert relay.held.wait(10), "the upload reached the registry"
        refused = client.delete("/v1/api/delete", json={"model": "held-Q4_0"})
        assert refused.status_code == 409 and refused.get_json()["code"] == "model_busy", refused.get_json()
        assert services_of(app).retention.make_room(1) == []
        assert (models_dir / "held-Q4_0.gguf").is_file()
        relay.release.set()
        assert ndjson(response)[-1]["status"] == "complete"
        assert client.delete("/v1/api/delete", json={"model": "held-Q4_0"}).status_code == 200

    assert pull(client, model=REPO, filename="held-Q4_0.gguf")[-1]["status"] == "complete"
    with services_of(app).store.lock("held-Q4_0.gguf"):  # as a pull replacing the file holds it
        busy = client.post("/v1/api/push", json={"model": "held-Q4_0", "target": f"oci://{registry.host}/{repo}:v2"})
    assert busy.status_code == 409 and busy.get_json()["code"] == "model_busy", busy.get_json()


def test_a_file_pulled_from_another_repository_of_the_registry_is_mounted_not_uploaded(
        registry, make_app, make_gguf, models_dir, tmp_path):
    origin, copy = unique("ai/origin"), unique("ai/copy")
    model = make_gguf("mounted.gguf", 128 * KiB)
    registry.publish(origin, "v1", [(model, DMR_GGUF, {TITLE: "mounted-Q4_0.gguf"})])
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()
    assert pull(client, model=f"oci://{registry.host}/{origin}:v1")[-1]["status"] == "complete"
    target = f"oci://{registry.host}/{copy}:v1"
    assert push(client, model="mounted-Q4_0", target=target)[-1]["status"] == "complete"
    digest = "sha256:" + sha256_file(model)
    mounts = registry_requests(registry, "POST", copy)
    assert any(f"mount={digest}" in post and f"from={origin}" in post for post in mounts), mounts
    assert len(registry_requests(registry, "PUT", copy)) == 1, "only the config blob was uploaded"
    client.delete("/v1/api/delete", json={"model": "mounted-Q4_0"})
    assert pull(client, model=target)[-1]["sha256"] == sha256_file(model)


def test_a_bearer_registry_is_asked_for_a_token_that_may_read_the_mount_source(
        registry, make_app, make_gguf, models_dir, tmp_path):
    from tests.registry import BearerFront
    origin, copy = unique("ai/tok-origin"), unique("ai/tok-copy")
    model = make_gguf("tokmount.gguf", 64 * KiB)
    registry.publish(origin, "v1", [(model, DMR_GGUF, {TITLE: "tokmount-Q4_0.gguf"})])
    with BearerFront(registry, users={USER: PASSWORD}, push=True) as front:
        path = auth_file(tmp_path, {front.host: basic_entry(USER, PASSWORD)})
        client = make_app(insecure_registries=(front.host,), registry_auth_file=path).test_client()
        pulled = pull(client, model=f"oci://{front.host}/{origin}:v1")[-1]
        assert pulled["status"] == "complete", pulled
        pushed = push(client, model="tokmount-Q4_0", target=f"oci://{front.host}/{copy}:v1")[-1]
        assert pushed["status"] == "complete", pushed
        assert f"repository:{copy}:pull,push repository:{origin}:pull" in front.scopes, front.scopes
    assert any(f"from={origin}" in post for post in registry_requests(registry, "POST", copy))
    assert len(registry_requests(registry, "PUT", copy)) == 1, "only the config blob was uploaded"
