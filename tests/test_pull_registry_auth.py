"""Registry auth against real registries: Basic (docker-registry with htpasswd) and the Bearer token flow
(a front of our own that issues tokens, over the real registry); config.json parsing."""
from __future__ import annotations

import json
import time

import pytest

from proxy.app import create_app
from proxy.sources.registry_auth import load_auth_file
from proxy.services import services_of
from scripts.gguf_files import sha256_file
from tests.pull_fixtures import KiB, proxy_settings, pull, pull_error
from scripts.registry import DMR_GGUF, TITLE
from tests.registry import BearerFront, running_registry
from tests.registry_clients import PASSWORD, USER, auth_file, basic_entry


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("basic-registry"), htpasswd=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("open-registry")) as running:
        yield running


@pytest.fixture
def app_for(hub, models_dir, tmp_path):
    apps = []

    def make(host: str, auths: dict | None):
        values = dict(insecure_registries=(host,), docker_config=str(tmp_path / "none"))
        if auths is not None:
            values["registry_auth_file"] = auth_file(tmp_path, auths)
        app = create_app(proxy_settings(models_dir, hub.url, **values))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        services_of(app).pulls.shutdown()


def test_basic_auth_registry_pulls_with_the_right_credentials_only(basic_registry, app_for, make_gguf, models_dir):
    model = make_gguf("b.gguf", 64 * KiB)
    basic_registry.publish("ai/private", "v1", [(model, DMR_GGUF, {TITLE: "private.gguf"})])
    ref = f"oci://{basic_registry.host}/ai/private:v1"
    for auths in ({basic_registry.host: basic_entry(USER, "wrong")}, {}):
        error = pull_error(app_for(basic_registry.host, auths), 502, "source_auth_failed", model=ref)
        assert PASSWORD not in error["error"] and "wrong" not in error["error"]
    key = f"https://{basic_registry.host}"
    complete = pull(app_for(basic_registry.host, {key: {"username": USER, "password": PASSWORD}}), model=ref)[-1]
    assert complete["status"] == "complete" and complete["sha256"] == sha256_file(model), complete


def test_bearer_flow_gets_one_token_and_blob_store_never_sees_it(open_registry, app_for, make_gguf, models_dir):
    parts = [make_gguf(f"s-0000{i}-of-00002.gguf", 96 * KiB) for i in (1, 2)]
    open_registry.publish("ai/tokened", "v1", [(p, DMR_GGUF, {TITLE: p.name}) for p in parts])
    with BearerFront(open_registry, users={USER: PASSWORD}) as front:
        ref = f"oci://{front.host}/ai/tokened:v1"
        pull_error(app_for(front.host, {}), 502, "source_auth_failed", model=ref)
        pull_error(app_for(front.host, {front.host: basic_entry(USER, "nope")}), 502, "source_auth_failed", model=ref)
        lines = pull(app_for(front.host, {front.host: basic_entry(USER, PASSWORD)}), model=ref)
        assert lines[-1]["status"] == "complete", lines[-1]
        assert len(front.issued) == 1, "the token is reused for the manifest and every blob request"
        assert front.store_auth_headers and not any(front.store_auth_headers)
    for part in parts:
        assert (models_dir / part.name).read_bytes() == part.read_bytes()


def test_anonymous_bearer_tokens_are_asked_for_without_credentials(open_registry, app_for, make_gguf):
    open_registry.publish("ai/public", "v1", [(make_gguf("p.gguf"), DMR_GGUF, {TITLE: "public.gguf"})])
    with BearerFront(open_registry, anonymous=True) as front:
        complete = pull(app_for(front.host, None), model=f"oci://{front.host}/ai/public:v1")[-1]
        assert complete["status"] == "complete", complete


def test_auth_file_forms_and_malformed_files(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": basic_entry("hubuser", "a:b"),
        "https://ghcr.io": {"username": "u", "password": "p"},
        "registry.local:5000": {"identitytoken": "tok"}}}))
    creds = load_auth_file(path, required=True)
    assert (creds["registry-1.docker.io"].username, creds["registry-1.docker.io"].password) == ("hubuser", "a:b")
    assert creds["ghcr.io"].basic() and creds["registry.local:5000"].identity_token == "tok"
    assert "a:b" not in repr(creds)
    assert load_auth_file(tmp_path / "absent.json", required=False) == {}
    for text in ("{not json", '{"auths": []}', '{"auths": {"h": {"auth": "!!"}}}'):
        path.write_text(text)
        with pytest.raises(ValueError):
            load_auth_file(path, required=True)
    with pytest.raises(ValueError, match="REGISTRY_AUTH_FILE"):
        load_auth_file(tmp_path / "absent.json", required=True)


def test_a_set_but_malformed_auth_file_stops_the_proxy_at_start(hub, models_dir, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="REGISTRY_AUTH_FILE"):
        create_app(proxy_settings(models_dir, hub.url, registry_auth_file=str(bad)))


def test_an_expired_token_is_renewed_and_a_live_one_reused(open_registry, app_for, make_gguf):
    open_registry.publish("ai/expiring", "v1", [(make_gguf("e.gguf"), DMR_GGUF, {TITLE: "expiring.gguf"})])
    with BearerFront(open_registry, anonymous=True, token_ttl_s=1) as front:
        client = app_for(front.host, None)
        ref = f"oci://{front.host}/ai/expiring:v1"
        assert client.get(f"/v1/api/files?model={ref}").get_json()["files"][0]["filename"] == "expiring.gguf"
        assert client.get(f"/v1/api/files?model={ref}").status_code == 200
        assert len(front.issued) == 1
        time.sleep(1.2)
        assert pull(client, model=ref)[-1]["status"] == "complete"
        assert len(front.issued) == 2


def test_an_identity_token_is_exchanged_at_the_realm_for_access_tokens_and_never_shown(
        open_registry, app_for, make_gguf, models_dir, caplog):
    refresh = "rt-" + "9f" * 16
    model = make_gguf("id.gguf", 64 * KiB)
    open_registry.publish("ai/identity", "v1", [(model, DMR_GGUF, {TITLE: "identity-Q4_0.gguf"})])
    caplog.set_level("DEBUG")
    with BearerFront(open_registry, refresh_tokens={refresh}, push=True) as front:
        ref = f"oci://{front.host}/ai/identity:v1"
        refused = pull_error(app_for(front.host, {front.host: {"identitytoken": "rt-revoked"}}), 502,
                             "source_auth_failed", model=ref)
        assert "rt-revoked" not in refused["error"]
        client = app_for(front.host, {front.host: {"identitytoken": refresh}})
        complete = pull(client, model=ref)[-1]
        assert complete["status"] == "complete" and complete["sha256"] == sha256_file(model), complete
        grant = front.grants[-1]
        assert (grant["grant_type"], grant["service"], grant["scope"]) == \
            ("refresh_token", "front", "repository:ai/identity:pull") and grant["client_id"]
        pushed = client.post("/v1/api/push", json={"model": "identity-Q4_0", "stream": False,
                                                   "target": f"oci://{front.host}/ai/identity-copy:v1"})
        assert pushed.status_code == 200, pushed.get_json()
        assert front.grants[-1]["scope"].startswith("repository:ai/identity-copy:pull,push")
        shown = [json.dumps(lines) for lines in (refused, complete, pushed.get_json())]
        shown += [client.get(path).get_data(as_text=True) for path in ("/v1/api/models", "/v1/api/pulls", "/metrics")]
    for text in (*shown, caplog.text, *(p.read_text(errors="replace") for p in models_dir.rglob("*") if p.is_file()
                                        and p.stat().st_size < 1 << 20)):
        assert refresh not in text and "rt-revoked" not in text
