"""An OCI image index (or Docker manifest list) over a model artifact, published on the real registry with
plain distribution API calls: a pull follows it to the model's manifest; `revision`/`digest` are the index's."""
from __future__ import annotations

import pytest
import requests

from scripts.gguf_files import sha256_file
from tests.pull_fixtures import KiB, pull, pull_error
from scripts.registry import DMR_CONFIG, DMR_GGUF, OCI_MANIFEST, TITLE
from tests.registry import registry  # noqa: F401 - fixture

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
IMAGE_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def client(make_app, registry, tmp_path):
    return make_app(insecure_registries=(registry.host,), docker_config=str(tmp_path / "none")).test_client()


def descriptor(registry, repo: str, digest: str, **extra) -> dict:
    size = len(requests.get(f"{registry.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST},
                            timeout=10).content)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, **extra}


def publish_index(registry, repo: str, tag: str, make_gguf, model_entry: dict | None, media_type: str) -> str:
    """An index of a container image (linux/amd64) and, when `model_entry` is given (extra descriptor
    fields), a model artifact after it; the index's digest."""
    image = registry.publish(repo, "image", [(make_gguf(f"{tag}-layer.bin"), IMAGE_LAYER, None)], OCI_MANIFEST,
                             IMAGE_CONFIG)
    entries = [descriptor(registry, repo, image, platform={"architecture": "amd64", "os": "linux"})]
    if model_entry is not None:
        model = registry.publish(repo, "model", [(make_gguf(f"{tag}.gguf", 64 * KiB), DMR_GGUF,
                                                  {TITLE: f"{tag}-Q4_0.gguf"})])
        entries.append(descriptor(registry, repo, model, **model_entry))
    return registry.put_manifest(repo, tag, {"schemaVersion": 2, "mediaType": media_type, "manifests": entries},
                                 media_type)


def test_an_oci_index_is_followed_to_its_model_entry_and_its_digest_pins_the_pull(
        registry, client, make_gguf, models_dir):
    index = publish_index(registry, "ai/indexed", "v1", make_gguf, {"artifactType": DMR_CONFIG}, OCI_INDEX)
    complete = pull(client, model=f"oci://{registry.host}/ai/indexed:v1")[-1]
    assert complete["status"] == "complete" and complete["filename"] == "v1-Q4_0.gguf", complete
    assert complete["digest"] == complete["revision"] == index, "the digest of what the reference named"
    assert complete["sha256"] == sha256_file(models_dir / "v1-Q4_0.gguf")
    again = pull(client, model=f"oci://{registry.host}/ai/indexed@{index}", replace=True)[-1]
    assert again["status"] == "complete" and (again["digest"], again["sha256"]) == (index, complete["sha256"]), again


def test_a_docker_manifest_list_entry_without_artifact_type_is_found_by_its_gguf_layer(
        registry, client, make_gguf):
    publish_index(registry, "ai/listed", "v2", make_gguf, {}, DOCKER_LIST)
    complete = pull(client, model=f"oci://{registry.host}/ai/listed:v2")[-1]
    assert complete["status"] == "complete" and complete["filename"] == "v2-Q4_0.gguf", complete


def test_an_index_without_a_model_is_file_not_found_before_streaming(registry, client, make_gguf):
    publish_index(registry, "ai/images", "v3", make_gguf, None, OCI_INDEX)
    error = pull_error(client, 404, "file_not_found", model=f"oci://{registry.host}/ai/images:v3")
    assert "image index" in error["error"], error
