"""A user's own GGUF through Ollama's API with the real `ollama` client: blobs uploaded and checked by digest,
/api/create installing one like a pull (provenance, header, atomic move), /api/copy adding a name, /api/delete of a
name, /api/push to a real registry; all behind PROXY_API_KEY (no backend: none of this loads a model)."""
from __future__ import annotations

import ollama
import pytest
import requests

from scripts.gguf_files import sha256_file
from tests.helpers import serving
from tests.pull_fixtures import KiB, hub, make_app, make_gguf, models_dir  # noqa: F401
from tests.registry import registry  # noqa: F401 - the fixture

KEY = "create-key"


@pytest.fixture
def proxy(make_app, registry, tmp_path):  # noqa: F811
    app = make_app(api_key=KEY, insecure_registries=(registry.host,), docker_config=str(tmp_path / "none"))
    with serving(app) as url:
        yield {"url": url, "client": ollama.Client(host=url, headers={"Authorization": f"Bearer {KEY}"}),
               "registry": registry}


def _names(client) -> dict[str, str]:
    return {m.model: m.digest for m in client.list().models}


def test_an_uploaded_gguf_is_created_listed_copied_and_deleted_by_name(proxy, make_gguf, models_dir):  # noqa: F811
    client, source = proxy["client"], make_gguf("mine.gguf", 3 * 1024 * KiB)  # over the 1 MiB body limit
    digest = client.create_blob(source)  # HEAD, then POST of the bytes

    lines = list(client.create(model="mine", files={"mine.gguf": digest}, stream=True))
    client.copy("mine", "mine:backup")

    assert lines[-1].status == "success"
    assert (models_dir / "mine-latest.gguf").read_bytes() == source.read_bytes()
    assert _names(client) == {"mine:latest": sha256_file(source), "mine:backup": sha256_file(source)}
    assert client.show("mine:backup").details.format == "gguf"
    client.delete("mine:backup")  # one name goes, the model stays
    assert list(_names(client)) == ["mine:latest"]
    client.delete("mine")
    assert _names(client) == {} and not (models_dir / "mine-latest.gguf").exists()


def test_a_blob_is_kept_only_with_its_digest_and_create_refuses_what_is_not_gguf(proxy, tmp_path):
    url, headers = proxy["url"], {"Authorization": f"Bearer {KEY}"}
    other = "sha256:" + "0" * 64
    lied = requests.post(f"{url}/api/blobs/{other}", data=b"not those bytes", headers=headers, timeout=30)
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"hello, not a model" * 100)
    digest = proxy["client"].create_blob(not_gguf)

    with pytest.raises(ollama.ResponseError) as refused:
        proxy["client"].create(model="notes", files={"notes.gguf": digest}, stream=False)
    assert lied.status_code == 400 and "digest mismatch" in lied.json()["error"]
    assert requests.head(f"{url}/api/blobs/{other}", headers=headers, timeout=30).status_code == 404
    assert refused.value.status_code == 422 and "GGUF" in refused.value.error
    assert _names(proxy["client"]) == {}


def test_models_are_made_and_pushed_only_with_the_key(proxy, make_gguf):  # noqa: F811
    keyless = ollama.Client(host=proxy["url"])
    with pytest.raises(ollama.ResponseError) as refused:
        keyless.create_blob(make_gguf("x.gguf", 16 * KiB))
    assert refused.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as copy_refused:
        keyless.copy("a", "b")
    assert copy_refused.value.status_code == 401


def test_push_publishes_a_created_model_under_the_registry_name_it_was_copied_to(proxy, make_gguf):  # noqa: F811
    client, source = proxy["client"], make_gguf("tiny.gguf", 64 * KiB)
    client.create(model="tiny", files={"tiny.gguf": client.create_blob(source)})
    target = f"{proxy['registry'].host}/me/tiny:v1"
    with pytest.raises(ollama.ResponseError) as hostless:
        client.push("tiny", stream=False)
    client.copy("tiny", target)

    lines = list(client.push(target, stream=True))

    assert hostless.value.status_code == 400 and "registry host" in hostless.value.error
    assert lines[-1].status == "success" and any(line.completed == line.total for line in lines if line.total)
    manifest = requests.get(f"http://{proxy['registry'].host}/v2/me/tiny/manifests/v1", timeout=30,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert [layer["digest"] for layer in manifest["layers"]] == [f"sha256:{sha256_file(source)}"]
