"""Push installed models to a real distribution registry (tests/registry.py) and pull them back with oci://."""
from __future__ import annotations

import json
import re

import pytest

from scripts.gguf_files import sha256_file
from tests.gemma_models import gemma_folder
from tests.pull_fixtures import KiB, pull
from scripts.registry import DMR_CONFIG, DMR_GGUF, OCI_MANIFEST, TITLE
from tests.registry import registry, running_registry  # noqa: F401 - registry: the fixture
from tests.registry_clients import PASSWORD, USER, auth_file, basic_entry, install, push


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("push-basic"), htpasswd=(USER, PASSWORD)) as running:
        yield running


def upload_posts(registry, repo: str) -> int:
    """Upload sessions the registry started for `repo`, from its access log."""
    log = (registry.storage.parent / "registry.log").read_text(errors="replace")
    return len(re.findall(rf'"POST /v2/{re.escape(repo)}/blobs/uploads/', log))


def test_push_then_pull_back_gives_the_same_bytes_and_a_second_push_sends_no_blob(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()
    sums = install(hub, client, make_gguf, {"tiny-Q4_K_M.gguf": 200 * KiB})
    target = f"oci://{registry.host}/ai/tiny:v1"
    lines = push(client, model="tiny-Q4_K_M", target=target)
    complete = lines[-1]
    assert complete["status"] == "complete" and complete["target"] == target, lines
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", complete["digest"])
    assert lines[0]["status"] == "pushing" and lines[-2]["completed"] == lines[-2]["total"] > 200 * KiB
    assert upload_posts(registry, "ai/tiny") == 2  # the file and the config

    manifest = json.loads(registry_get(registry, "ai/tiny", "v1"))
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["config"]["mediaType"] == DMR_CONFIG
    assert [(l["mediaType"], l["annotations"][TITLE]) for l in manifest["layers"]] == \
        [(DMR_GGUF, "tiny-Q4_K_M.gguf")]
    config = json.loads(registry.blob_path(manifest["config"]["digest"]).read_bytes())["config"]
    assert config["format"] == "gguf" and {"quantization", "size", "architecture"} <= config.keys()

    assert push(client, model="tiny-Q4_K_M.gguf", target=target)[-1]["digest"] == complete["digest"]
    assert upload_posts(registry, "ai/tiny") == 2, "the second push sends no blob again"

    assert client.delete("/v1/api/delete", json={"model": "tiny-Q4_K_M"}).status_code == 200
    assert not (models_dir / "tiny-Q4_K_M.gguf").exists()
    back = pull(client, model=target)[-1]
    assert back["status"] == "complete" and back["filename"] == "tiny-Q4_K_M.gguf", back
    assert back["sha256"] == sums["tiny-Q4_K_M.gguf"] == sha256_file(models_dir / "tiny-Q4_K_M.gguf")
    assert back["digest"] == complete["digest"]


def test_a_split_set_pushes_every_part_and_stream_false_answers_the_final_object(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()
    names = [f"split-Q8_0-0000{i}-of-00002.gguf" for i in (1, 2)]
    sums = install(hub, client, make_gguf, {name: 96 * KiB for name in names})
    target = f"oci://{registry.host}/ai/split:q8"
    response = client.post("/v1/api/push", json={"model": names[0], "target": target, "stream": False})
    assert response.status_code == 200 and response.get_json()["status"] == "complete", response.get_json()
    client.delete("/v1/api/delete", json={"model": names[0]})
    back = pull(client, model=target)[-1]
    assert back["files"] == names
    assert all(sha256_file(models_dir / name) == sums[name] for name in names)


def test_basic_auth_registry_takes_the_push_with_the_right_credentials_only(
        basic_registry, make_app, hub, make_gguf, tmp_path):
    def client_with(password: str):
        path = auth_file(tmp_path, {basic_registry.host: basic_entry(USER, password)})
        return make_app(insecure_registries=(basic_registry.host,), registry_auth_file=path).test_client()

    install(hub, client_with(PASSWORD), make_gguf, {"auth-Q4_0.gguf": 64 * KiB})
    target = f"oci://{basic_registry.host}/ai/auth:v1"
    refused = client_with("wrong").post("/v1/api/push", json={"model": "auth-Q4_0", "target": target, "stream": False})
    assert refused.status_code == 502 and refused.get_json()["code"] == "source_auth_failed", refused.get_json()
    assert "wrong" not in refused.get_data(as_text=True) and PASSWORD not in refused.get_data(as_text=True)
    assert push(client_with(PASSWORD), model="auth-Q4_0", target=target)[-1]["status"] == "complete"


@pytest.mark.parametrize("target, code", [
    ("https://example.com/a:b", "unsupported_source"), ("oci://no-host-here", "invalid_repo_id"),
    ("oci://127.0.0.1:5000/UPPER:tag", "invalid_repo_id"), ("oci://127.0.0.1:5000/a@sha256:" + "0" * 64,
                                                             "invalid_repo_id"), (7, "invalid_request")])
def test_a_bad_target_is_400(client, target, code):
    response = client.post("/v1/api/push", json={"model": "x", "target": target})
    assert response.status_code == 400 and response.get_json()["code"] == code, response.get_json()


def test_an_unknown_model_is_404_and_an_unreachable_registry_hub_unavailable(
        make_app, hub, make_gguf, tmp_path):
    from tests.helpers import free_port
    host = f"127.0.0.1:{free_port()}"
    client = make_app(insecure_registries=(host,), docker_config=str(tmp_path / "none")).test_client()
    response = client.post("/v1/api/push", json={"model": "nothing", "target": f"oci://{host}/a:b"})
    assert response.status_code == 404 and response.get_json()["code"] == "model_not_found"
    install(hub, client, make_gguf, {"gone-Q4_0.gguf": 64 * KiB})
    final = push(client, model="gone-Q4_0", target=f"oci://{host}/a:b")[-1]
    assert final["status"] == "error" and final["code"] == "hub_unavailable", final


def test_push_needs_the_api_key(make_app):
    client = make_app(api_key="k3y").test_client()
    response = client.post("/v1/api/push", json={"model": "x", "target": "oci://h.io/a:b"})
    assert response.status_code == 401


def registry_get(registry, repo: str, tag: str) -> bytes:
    import requests
    response = requests.get(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert response.status_code == 200, response.text
    return response.content


def test_cli_push_local_publishes_from_models_dir(registry, make_app, hub, make_gguf, models_dir, tmp_path, capsys):
    from proxy.cli.commands import main
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()
    install(hub, client, make_gguf, {"cli-Q4_0.gguf": 64 * KiB})
    env = {"MODELS_DIR": str(models_dir), "INSECURE_REGISTRIES": registry.host, "DOCKER_CONFIG": str(tmp_path / "none")}
    target = f"oci://{registry.host}/ai/cli:v1"
    assert main(["push", "--local", "cli-Q4_0", target], env) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"pushed {target} (manifest sha256:")
    assert main(["push", "--local", "nothing", target], env) == 1
    assert "[model_not_found]" in capsys.readouterr().err
    assert main(["push", "--local", "cli-Q4_0", "oci://nohost"], env) == 2


def test_bearer_registry_gets_a_pull_push_token_and_the_push_pulls_back(
        registry, make_app, hub, make_gguf, models_dir, tmp_path):
    from tests.registry import BearerFront
    sums = install(hub, make_app().test_client(), make_gguf, {"tok-Q4_0.gguf": 64 * KiB})
    with BearerFront(registry, users={USER: PASSWORD}, push=True) as front:
        path = auth_file(tmp_path, {front.host: basic_entry(USER, PASSWORD)})
        client = make_app(insecure_registries=(front.host, registry.host), registry_auth_file=path).test_client()
        target = f"oci://{front.host}/ai/tokened:v1"
        assert push(client, model="tok-Q4_0", target=target)[-1]["status"] == "complete"
        assert "repository:ai/tokened:pull,push" in front.scopes
        client.delete("/v1/api/delete", json={"model": "tok-Q4_0"})
        assert pull(client, model=target)[-1]["sha256"] == sums["tok-Q4_0.gguf"]


def test_the_real_gemma_round_trips_with_its_gguf_details(registry, make_app, gemma_gguf, models_dir, tmp_path):
    client = make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()
    gemma_folder(gemma_gguf, models_dir)  # installed by hand: no provenance, so the push hashes it and scans its header
    target = f"oci://{registry.host}/ai/gemma3:270m"
    assert push(client, model=gemma_gguf.name, target=target)[-1]["status"] == "complete"
    manifest = json.loads(registry_get(registry, "ai/gemma3", "270m"))
    config = json.loads(registry.blob_path(manifest["config"]["digest"]).read_bytes())["config"]
    assert (config["architecture"], config["quantization"]) == ("gemma3", "Q4_K_M"), config
    (models_dir / gemma_gguf.name).unlink()
    back = pull(client, model=target)[-1]
    assert back["filename"] == gemma_gguf.name and back["sha256"] == sha256_file(gemma_gguf), back
